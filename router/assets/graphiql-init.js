// Keygraph's GraphiQL: queries go to this router's /graphql. Sign in with the `login` mutation,
// then put `{"Authorization": "Bearer <accessToken>"}` in the Headers tab. Headers are not
// stored in the browser (an access token in localStorage is readable by any script of this
// origin and outlives the tab): after a reload, paste the token again.
(function () {
  var url = window.location.origin + window.location.pathname;
  var fetcher = GraphiQL.createFetcher({ url: url });
  var defaultQuery = [
    "# Welcome to Keygraph. Sign in first (the first administrator's password was printed",
    "# at the first start, unless identity.first_admin.password is set):",
    "#",
    "# mutation { login(email: \"admin@keygraph.localhost\", password: \"...\") { ... on AuthPayload { accessToken } } }",
    "#",
    "# then add {\"Authorization\": \"Bearer <accessToken>\"} under Headers and run:",
    "",
    "query Me {",
    "  me { id email roles { name } permissions }",
    "}",
    "",
  ].join("\n");
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      defaultEditorToolsVisibility: true,
      shouldPersistHeaders: false,
    })
  );
})();
