//! Federation router: supergraph, planning, execution, edge policy and GraphiQL.
//! Arrives with the router issue; the crate exists so the workspace layout is final.
