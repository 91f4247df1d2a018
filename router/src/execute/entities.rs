//! Entity fetches (`_entities`, alone or batched under aliases): the entities the plan's
//! paths lead to, their representations collected and deduplicated, one request for them
//! all, and each entity merged back into every place it came from; a subgraph error about
//! an entity gets the path of the first place it sits.

use std::cell::OnceCell;
use std::hash::BuildHasher as _;
use std::sync::PoisonError;

use hive_router_query_planner::ast::selection_set::SelectionSet;
use hive_router_query_planner::planner::plan_nodes::{FetchRewrite, FlattenNodePath};
use rustc_hash::FxHashMap;
use serde_json::Value as Json;

use super::fetch::subgraph_error;
use super::locations::{PathElem, locations, locations_mut};
use super::merge::{apply_rewrite, deep_merge};
use super::representation::representation;
use super::{Execution, State};
use crate::json::{self, Object, Sources, Value};

/// Entities to fetch for one `_entities` call (a Flatten's fetch, or one alias of a batch).
pub(super) struct EntityJob<'p> {
    pub(super) paths: Vec<&'p FlattenNodePath>,
    pub(super) requires: &'p SelectionSet,
    pub(super) input_rewrites: Option<&'p Vec<FetchRewrite>>,
    pub(super) output_rewrites: Option<&'p Vec<FetchRewrite>>,
    pub(super) variable: &'p str,
    pub(super) response_key: &'p str,
}

/// The representations of one job (as JSON), deduplicated, and where their entities go: for
/// each location the job's paths lead to, in the order [`locations`] visits them, the index of
/// its representation (none when it has none: a key field is null, or its type is not the
/// fetch's).
#[derive(Default)]
struct Collected {
    representations: Vec<Vec<u8>>,
    assigned: Vec<Option<u32>>,
    /// How many locations each representation's entity goes to.
    uses: Vec<u32>,
}

impl Execution<'_> {
    pub(super) async fn entity_fetch(
        &self,
        service: &str,
        document: &str,
        usages: Option<&std::collections::BTreeSet<String>>,
        jobs: Vec<EntityJob<'_>>,
    ) {
        let collected: Vec<Collected> = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let State { data, sources } = &mut *state;
            jobs.iter()
                .map(|job| self.collect(data, sources, job))
                .collect()
        };
        if collected.iter().all(|c| c.representations.is_empty()) {
            return;
        }
        let extra: Vec<(&str, &[Vec<u8>])> = jobs
            .iter()
            .zip(&collected)
            .map(|(job, c)| (job.variable, c.representations.as_slice()))
            .collect();
        let body = self.body(document, usages, &extra);
        let response = match self.send(service, body).await {
            Ok(response) => response,
            Err(error) => {
                self.push_errors(vec![error]);
                return;
            }
        };
        // Per job, where each representation's entity first sits: walked for when an error
        // names one, once however many errors there are.
        let first_locations: Vec<OnceCell<Vec<Option<Vec<PathElem>>>>> =
            jobs.iter().map(|_| OnceCell::new()).collect();
        let mut errors = Vec::new();
        for error in response.errors {
            errors.push(subgraph_error(error, service, |path| {
                // ["_entities", i, rest...] -> where entity i sits in the client's response.
                let key = path.first()?.as_str()?;
                let at = jobs.iter().position(|j| j.response_key == key)?;
                let (job, c) = (jobs.get(at)?, collected.get(at)?);
                // Without an index the error is about every entity: name the first.
                let index = match path.get(1) {
                    Some(index) => usize::try_from(index.as_u64()?).ok()?,
                    None => 0,
                };
                let target = first_locations
                    .get(at)?
                    .get_or_init(|| self.first_locations(&job.paths, c))
                    .get(index)?
                    .as_ref()?;
                let mut out: Vec<Json> = target.iter().map(|e| e.to_json()).collect();
                out.extend(path.iter().skip(2).cloned());
                Some(out)
            }));
        }
        self.push_errors(errors);
        let Some(Value::Object(mut data)) = response.data else {
            return;
        };
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State {
            data: merged,
            sources,
        } = &mut *state;
        let graph = &self.run.graph;
        for (job, c) in jobs.iter().zip(collected) {
            let Some(Value::Array(mut entities)) = take(&mut data, job.response_key, sources)
            else {
                continue;
            };
            for entity in entities.iter_mut().filter(|e| !e.is_null()) {
                for rewrite in job.output_rewrites.into_iter().flatten() {
                    apply_rewrite(entity, rewrite, graph, sources);
                }
            }
            // The same walk as `collect`'s, so the n-th location is the n-th it assigned.
            let Collected {
                assigned, mut uses, ..
            } = c;
            let mut assigned = assigned.into_iter();
            let sources = &*sources;
            for path in &job.paths {
                locations_mut(merged, path.as_slice(), graph, sources, &mut |slot| {
                    let Some(Some(index)) = assigned.next() else {
                        return;
                    };
                    let index = index as usize;
                    let (Some(entity), Some(left)) = (entities.get_mut(index), uses.get_mut(index))
                    else {
                        return;
                    };
                    if entity.is_null() {
                        return;
                    }
                    // Every location but the last gets a copy; the last takes the entity.
                    *left = left.saturating_sub(1);
                    let entity = if *left == 0 {
                        std::mem::replace(entity, Value::Null)
                    } else {
                        entity.clone()
                    };
                    deep_merge(slot, entity, graph, sources);
                });
            }
        }
    }

    /// For each representation of `collected`, the response path of the first location its
    /// entity goes to (for subgraph errors about that entity).
    fn first_locations<'p>(
        &self,
        paths: &[&'p FlattenNodePath],
        collected: &Collected,
    ) -> Vec<Option<Vec<PathElem<'p>>>> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut found = Vec::new();
        for path in paths {
            locations(
                &state.data,
                path.as_slice(),
                &mut Some((&mut Vec::new(), &mut found)),
                &mut Vec::new(),
                &self.run.graph,
                &state.sources,
            );
        }
        let mut first = vec![None; collected.representations.len()];
        for (assigned, path) in collected.assigned.iter().zip(found) {
            if let Some(slot) = assigned.and_then(|index| first.get_mut(index as usize))
                && slot.is_none()
            {
                *slot = Some(path);
            }
        }
        first
    }

    fn collect(&self, data: &Value, sources: &mut Sources, job: &EntityJob<'_>) -> Collected {
        let graph = &self.run.graph;
        let mut entities = Vec::new();
        for path in &job.paths {
            locations(
                data,
                path.as_slice(),
                &mut None,
                &mut entities,
                graph,
                sources,
            );
        }
        let mut collected = Collected {
            assigned: Vec::with_capacity(entities.len()),
            ..Collected::default()
        };
        // By a hash of the representation's bytes; the bytes are compared on a hit.
        let mut seen: FxHashMap<u64, usize> = FxHashMap::default();
        for entity in entities {
            let Some(written) = representation(entity, job, graph, sources) else {
                collected.assigned.push(None);
                continue;
            };
            let hash = rustc_hash::FxBuildHasher.hash_one(&written);
            let known = seen
                .get(&hash)
                .copied()
                .filter(|&index| collected.representations[index] == written)
                .or_else(|| {
                    seen.contains_key(&hash)
                        .then(|| collected.representations.iter().position(|r| *r == written))
                        .flatten()
                });
            let index = match known {
                Some(index) => index,
                None => {
                    seen.entry(hash).or_insert(collected.representations.len());
                    collected.representations.push(written);
                    collected.uses.push(0);
                    collected.representations.len() - 1
                }
            };
            if let Some(uses) = collected.uses.get_mut(index) {
                *uses += 1;
            }
            collected.assigned.push(u32::try_from(index).ok());
        }
        collected
    }
}

/// Removes and returns the member `key`.
fn take(members: &mut Object, key: &str, sources: &Sources) -> Option<Value> {
    let index = json::position(members, key, sources)?;
    Some(members.swap_remove(index).1)
}
