//! What preparing an operation the router has not seen costs (parsing, the limits, validation
//! and planning, as for a request that misses the plan cache), for the largest legitimate
//! operations of Keygraph's graph and for documents built to be as expensive as the default
//! `router.limits` let them be: `cargo bench -p keygraph-router --bench preparation`.
//!
//! Each document is prepared again and again with a new comment in front (so nothing is
//! cached), in alternating rounds so the host's drift touches every document alike; the table
//! gives the median per preparation and its ratio to GraphiQL's introspection query, the
//! largest legitimate operation (226 fields once its fragments are inlined, 15 levels deep).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keygraph_kernel::config::Config;
use keygraph_kernel::testing::fragment_fan;
use keygraph_router::plan::{Graph, GraphOptions};

const ROUNDS: usize = 5;
const PER_ROUND: Duration = Duration::from_millis(400);

fn repeat(n: usize, f: impl Fn(usize) -> String) -> String {
    (0..n).map(f).collect::<Vec<_>>().join(" ")
}

fn documents() -> Vec<(&'static str, String)> {
    vec![
        (
            "legitimate: GraphiQL introspection",
            include_str!("../tests/introspection.graphql").to_owned(),
        ),
        (
            "legitimate: me with roles and permissions",
            "{ me { id email displayName emailVerified createdAt permissions roles { id name description builtIn permissions { code description module } } } }".to_owned(),
        ),
        (
            "legitimate: admin's user list",
            "query($after: String) { users(first: 100, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id email displayName emailVerified status createdAt roles { name } permissions } } } }".to_owned(),
        ),
        ("at the limits: 999 repeats of one field", format!("{{ me {{ {} }} }}", "id ".repeat(998))),
        (
            "at the limits: 250 repeats of a 4-deep selection",
            format!("{{ {} }}", "me { roles { permissions { code } } } ".repeat(250)),
        ),
        (
            "at the limits: 500 conflicting arguments",
            format!("{{ {} }}", repeat(500, |i| format!("role(id: \"{i}\") {{ id }}"))),
        ),
        (
            "at the limits: 30 aliases, 970 fields under them",
            format!(
                "{{ {} }}",
                repeat(30, |i| format!("a{i}: me {{ {} }}", "id email ".repeat(16)))
            ),
        ),
        ("at the limits: fragment fan to 512 fields", fragment_fan(9, "__typename")),
        (
            "at the limits: fragment fan to 512 entity fields",
            fragment_fan(8, "me { roles { name } }"),
        ),
        (
            "within tokens: 2,000 repeated directives",
            format!("{{ __typename {} }}", "@skip(if: false) ".repeat(2_000)),
        ),
        (
            "within tokens: 1,500 operations",
            repeat(1_500, |i| format!("query Q{i} {{ __typename }}")),
        ),
    ]
}

fn main() -> anyhow::Result<()> {
    let config = Config::from_sources(None, Vec::new())?;
    let options = GraphOptions::from(&config.router);
    let graph = Graph::new(
        include_str!("../../schema/supergraph.graphql").to_owned(),
        &options,
    )
    .map_err(anyhow::Error::msg)?;
    // `-- WORDS`: only the documents whose name contains WORDS (and the reference).
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let documents: Vec<_> = documents()
        .into_iter()
        .enumerate()
        .filter(|(i, (name, _))| {
            *i == 0 || only.is_empty() || only.iter().any(|o| name.contains(o.as_str()))
        })
        .map(|(_, d)| d)
        .collect();
    let mut samples: BTreeMap<usize, Vec<Duration>> = BTreeMap::new();
    let mut outcomes: BTreeMap<usize, String> = BTreeMap::new();
    let mut nonce = 0usize;
    for _ in 0..ROUNDS {
        for (i, (_, query)) in documents.iter().enumerate() {
            let started = Instant::now();
            while started.elapsed() < PER_ROUND {
                nonce += 1;
                let text = format!("# {nonce}\n{query}");
                let operation_name = query.starts_with("query Q0").then_some("Q0");
                let one = Instant::now();
                let preparation = graph.prepare(&text, operation_name);
                samples.entry(i).or_default().push(one.elapsed());
                outcomes
                    .entry(i)
                    .or_insert_with(|| match &preparation.outcome {
                        Ok(_) => "planned".into(),
                        Err(err) => {
                            let errors = err.to_errors();
                            let first = errors
                                .first()
                                .and_then(|e| e["message"].as_str())
                                .unwrap_or_default()
                                .chars()
                                .take(60)
                                .collect::<String>();
                            format!("{} error(s): {first}", errors.len())
                        }
                    });
            }
        }
    }
    let median = |i: usize| {
        let mut v = samples.get(&i).cloned().unwrap_or_default();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let reference = median(0).as_secs_f64();
    println!(
        "{:<52} {:>10} {:>8}  outcome",
        "document (prepared uncached)", "median", "ratio"
    );
    for (i, (name, _)) in documents.iter().enumerate() {
        let m = median(i);
        println!(
            "{name:<52} {:>8.2}ms {:>7.1}x  {}",
            m.as_secs_f64() * 1e3,
            m.as_secs_f64() / reference,
            outcomes.get(&i).map_or("", String::as_str)
        );
    }
    Ok(())
}
