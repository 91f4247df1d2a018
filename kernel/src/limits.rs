//! What one GraphQL operation may cost, counted on the operation as it would execute: every
//! fragment spread stands for its fragment's selections again, so `{ ...A }` with
//! `fragment A on Query { ...B ...B }` counts `B`'s fields twice.
//!
//! Validation, normalization and planning all work on that inlined operation, so its size is
//! what they cost; a document of a few hundred bytes can spell out millions of fields
//! through fragments that spread each other. [`measure`] counts it in one pass over the
//! document, each fragment measured once (memoized), with saturating arithmetic, before any of
//! that work starts. The router measures graphql-tools' AST, the subgraphs async-graphql's;
//! both through [`Document`].

use std::collections::HashMap;

use async_graphql::Positioned;
use async_graphql::parser::types::{ExecutableDocument, Selection as AgSelection};

/// How deeply selection sets may nest while measuring, counting fields, inline fragments and
/// fragment spreads alike: a bound on the walk's own recursion (and on a chain of fragments
/// spreading the next), far above what an application writes.
pub const MAX_NESTING: usize = 64;

/// The size of an operation with its fragments inlined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Field selections, `__typename` included, each use of a fragment counted again.
    pub fields: u64,
    /// Aliased field selections, counted the same way.
    pub aliases: u64,
    /// How deeply fields nest; a root field is level 1. Fragments add no level.
    pub depth: u64,
    /// Directives on operations, fields, fragments and spreads, counted the same way.
    pub directives: u64,
}

impl Cost {
    fn add(&mut self, other: Cost) {
        self.fields = self.fields.saturating_add(other.fields);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.depth = self.depth.max(other.depth);
        self.directives = self.directives.saturating_add(other.directives);
    }

    fn with_directives(mut self, directives: usize) -> Self {
        self.directives = self.directives.saturating_add(directives as u64);
        self
    }
}

/// The limits an operation is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_depth: u64,
    pub max_fields: u64,
    pub max_aliases: u64,
    pub max_directives: u64,
}

/// Which limit an operation went over, and by how much.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error(
        "the operation selects {actual} fields once its fragments are inlined; at most {max} are accepted"
    )]
    Fields { actual: u64, max: u64 },
    #[error(
        "the operation uses {actual} aliases once its fragments are inlined; at most {max} are accepted"
    )]
    Aliases { actual: u64, max: u64 },
    #[error(
        "the operation uses {actual} directives once its fragments are inlined; at most {max} are accepted"
    )]
    Directives { actual: u64, max: u64 },
    #[error("the operation nests fields {actual} levels deep; at most {max} are accepted")]
    Depth { actual: u64, max: u64 },
    #[error("the operation nests selection sets and fragment spreads more than {max} levels deep")]
    Nesting { max: u64 },
    /// The router's parser stops at this many lexical tokens.
    #[error("the operation has more than {max} tokens")]
    Tokens { max: u64 },
    /// The router's parser stops at this nesting of `{`, `[` and `(`.
    #[error("the operation nests braces, brackets or parentheses more than {max} levels deep")]
    Brackets { max: u64 },
}

impl LimitExceeded {
    /// The limit's name, as error extensions and the documentation call it.
    pub fn limit(&self) -> &'static str {
        match self {
            LimitExceeded::Fields { .. } => "max_fields",
            LimitExceeded::Aliases { .. } => "max_aliases",
            LimitExceeded::Directives { .. } => "max_directives",
            LimitExceeded::Depth { .. } => "max_depth",
            LimitExceeded::Nesting { .. } => "max_nesting",
            LimitExceeded::Tokens { .. } => "max_tokens",
            LimitExceeded::Brackets { .. } => "max_brackets",
        }
    }

    /// The limit's value.
    pub fn max(&self) -> u64 {
        match self {
            LimitExceeded::Fields { max, .. }
            | LimitExceeded::Aliases { max, .. }
            | LimitExceeded::Directives { max, .. }
            | LimitExceeded::Depth { max, .. }
            | LimitExceeded::Nesting { max }
            | LimitExceeded::Tokens { max }
            | LimitExceeded::Brackets { max } => *max,
        }
    }

    /// `extensions` of the GraphQL error that refuses the operation.
    pub fn extensions(&self) -> serde_json::Value {
        serde_json::json!({
            "code": crate::ErrorCode::OperationLimitExceeded.as_str(),
            "limit": self.limit(),
            "max": self.max(),
        })
    }
}

impl Limits {
    /// Measures every operation of `document` (validation reads them all) and holds the
    /// largest depth and the sums of fields and aliases to the limits.
    pub fn check<D: Document + ?Sized>(&self, document: &D) -> Result<Cost, LimitExceeded> {
        let cost = measure(document)?;
        if cost.depth > self.max_depth {
            return Err(LimitExceeded::Depth {
                actual: cost.depth,
                max: self.max_depth,
            });
        }
        if cost.fields > self.max_fields {
            return Err(LimitExceeded::Fields {
                actual: cost.fields,
                max: self.max_fields,
            });
        }
        if cost.aliases > self.max_aliases {
            return Err(LimitExceeded::Aliases {
                actual: cost.aliases,
                max: self.max_aliases,
            });
        }
        if cost.directives > self.max_directives {
            return Err(LimitExceeded::Directives {
                actual: cost.directives,
                max: self.max_directives,
            });
        }
        Ok(cost)
    }
}

/// One selection of a parsed document, as [`measure`] sees it.
pub enum Node<'d, S> {
    Field {
        aliased: bool,
        directives: usize,
        selections: &'d [S],
    },
    InlineFragment {
        directives: usize,
        selections: &'d [S],
    },
    FragmentSpread {
        directives: usize,
        fragment: &'d str,
    },
}

/// An operation or fragment definition: the directives on it and its selections.
pub struct Definition<'d, S> {
    pub directives: usize,
    pub selections: &'d [S],
}

/// A parsed executable document of some parser's AST, as [`measure`] reads it.
pub trait Document {
    /// One selection of that AST.
    type Selection;
    /// Every operation.
    fn operations(&self) -> Vec<Definition<'_, Self::Selection>>;
    /// Every fragment definition, by name.
    fn fragments(&self) -> Vec<(&str, Definition<'_, Self::Selection>)>;
    /// What a selection is.
    fn node(selection: &Self::Selection) -> Node<'_, Self::Selection>;
}

/// The cost of all of `document`'s operations together: fields and aliases summed, the
/// deepest depth. A fragment that spreads itself (a cycle, which validation reports) adds
/// nothing where it recurs; an unknown fragment adds nothing either.
pub fn measure<D: Document + ?Sized>(document: &D) -> Result<Cost, LimitExceeded> {
    let mut walk = Walk::<D> {
        fragments: document
            .fragments()
            .into_iter()
            .rev() // the first definition of a name wins, as in validation's messages
            .map(|(name, definition)| (name, (definition, Memo::Unvisited)))
            .collect(),
    };
    let mut total = Cost::default();
    for operation in document.operations() {
        total.add(
            walk.selections(operation.selections, 0)?
                .with_directives(operation.directives),
        );
    }
    Ok(total)
}

enum Memo {
    Unvisited,
    InProgress,
    Measured(Cost),
}

struct Walk<'d, D: Document + ?Sized> {
    fragments: HashMap<&'d str, (Definition<'d, D::Selection>, Memo)>,
}

impl<'d, D: Document + ?Sized> Walk<'d, D> {
    fn selections(
        &mut self,
        selections: &'d [D::Selection],
        level: usize,
    ) -> Result<Cost, LimitExceeded> {
        if level > MAX_NESTING {
            return Err(LimitExceeded::Nesting {
                max: MAX_NESTING as u64,
            });
        }
        let mut cost = Cost::default();
        for selection in selections {
            match D::node(selection) {
                Node::Field {
                    aliased,
                    directives,
                    selections,
                } => {
                    let below = self.selections(selections, level + 1)?;
                    cost.add(
                        Cost {
                            fields: below.fields.saturating_add(1),
                            aliases: below.aliases.saturating_add(u64::from(aliased)),
                            depth: below.depth + 1,
                            directives: below.directives,
                        }
                        .with_directives(directives),
                    );
                }
                Node::InlineFragment {
                    directives,
                    selections,
                } => {
                    cost.add(
                        self.selections(selections, level + 1)?
                            .with_directives(directives),
                    );
                }
                Node::FragmentSpread {
                    directives,
                    fragment,
                } => {
                    cost.add(
                        self.fragment(fragment, level + 1)?
                            .with_directives(directives),
                    );
                }
            }
        }
        Ok(cost)
    }

    fn fragment(&mut self, name: &str, level: usize) -> Result<Cost, LimitExceeded> {
        let Some((definition, memo)) = self.fragments.get_mut(name) else {
            return Ok(Cost::default());
        };
        match memo {
            Memo::Measured(cost) => Ok(*cost),
            Memo::InProgress => Ok(Cost::default()),
            Memo::Unvisited => {
                *memo = Memo::InProgress;
                let (selections, directives) = (definition.selections, definition.directives);
                let cost = self
                    .selections(selections, level)?
                    .with_directives(directives);
                if let Some((_, memo)) = self.fragments.get_mut(name) {
                    *memo = Memo::Measured(cost);
                }
                Ok(cost)
            }
        }
    }
}

impl Document for ExecutableDocument {
    type Selection = Positioned<AgSelection>;

    fn node(selection: &Self::Selection) -> Node<'_, Self::Selection> {
        match &selection.node {
            AgSelection::Field(field) => Node::Field {
                aliased: field.node.alias.is_some(),
                directives: field.node.directives.len(),
                selections: &field.node.selection_set.node.items,
            },
            AgSelection::InlineFragment(fragment) => Node::InlineFragment {
                directives: fragment.node.directives.len(),
                selections: &fragment.node.selection_set.node.items,
            },
            AgSelection::FragmentSpread(spread) => Node::FragmentSpread {
                directives: spread.node.directives.len(),
                fragment: spread.node.fragment_name.node.as_str(),
            },
        }
    }

    fn operations(&self) -> Vec<Definition<'_, Self::Selection>> {
        self.operations
            .iter()
            .map(|(_, operation)| Definition {
                directives: operation.node.directives.len(),
                selections: &operation.node.selection_set.node.items,
            })
            .collect()
    }

    fn fragments(&self) -> Vec<(&str, Definition<'_, Self::Selection>)> {
        self.fragments
            .iter()
            .map(|(name, fragment)| {
                (
                    name.as_str(),
                    Definition {
                        directives: fragment.node.directives.len(),
                        selections: &fragment.node.selection_set.node.items,
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(query: &str) -> Result<Cost, LimitExceeded> {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        measure(&document)
    }

    fn fragment_fan(levels: usize) -> String {
        crate::testing::fragment_fan(levels, "me { id }")
    }

    #[test]
    fn fields_aliases_and_depth_are_counted_as_written() {
        assert_eq!(
            cost("{ me { id a: name friends { id } } b: me { id } }"),
            Ok(Cost {
                fields: 7,
                aliases: 2,
                depth: 3,
                directives: 0
            })
        );
    }

    #[test]
    fn each_use_of_a_fragment_counts_again() {
        let query = "{ a: me { ...F } b: me { ...F } } fragment F on User { x: id y: name }";
        assert_eq!(
            cost(query),
            Ok(Cost {
                fields: 6,
                aliases: 6,
                depth: 2,
                directives: 0
            })
        );
        // Inline fragments add no depth.
        assert_eq!(
            cost("{ me { ... on User { ... { id } } } }").map(|c| c.depth),
            Ok(2)
        );
    }

    #[test]
    fn fragments_spreading_each_other_twice_count_exponentially_in_one_pass() {
        // 2^24 copies of `me { id }`: counted, not walked.
        assert_eq!(
            cost(&fragment_fan(24)),
            Ok(Cost {
                fields: 2 << 24,
                aliases: 0,
                depth: 2,
                directives: 0
            })
        );
        // 4^40 is far past u64: the count saturates instead of overflowing.
        let mut wide = String::from("{ ...F0 }");
        for i in 0..40 {
            let next = i + 1;
            wide.push_str(&format!(
                " fragment F{i} on Query {{ ...F{next} ...F{next} ...F{next} ...F{next} }}"
            ));
        }
        wide.push_str(" fragment F40 on Query { id }");
        assert_eq!(cost(&wide).map(|c| c.fields), Ok(u64::MAX));
    }

    #[test]
    fn cycles_and_unknown_fragments_add_nothing_and_end() {
        let query =
            "{ ...A } fragment A on Query { me { id } ...B } fragment B on Query { ...A ...Nope }";
        assert_eq!(cost(query).map(|c| c.fields), Ok(2));
    }

    #[test]
    fn a_chain_of_fragments_deeper_than_the_nesting_bound_is_refused() {
        let mut query = String::from("{ ...F0 }");
        for i in 0..100 {
            query.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
        }
        query.push_str(" fragment F100 on Query { me { id } }");
        assert_eq!(
            cost(&query),
            Err(LimitExceeded::Nesting {
                max: MAX_NESTING as u64
            })
        );
    }

    #[test]
    fn directives_count_wherever_they_are_and_once_per_use() {
        let query =
            "query @a { me @b { id @c } ...F @d ... @e { id } } fragment F on Query @f { x @g }";
        assert_eq!(cost(query).map(|c| c.directives), Ok(7));
        let twice = "{ ...F ...F } fragment F on Query @f { x @g }";
        assert_eq!(cost(twice).map(|c| c.directives), Ok(4));
    }

    #[test]
    fn limits_name_what_was_exceeded() {
        let limits = Limits {
            max_depth: 3,
            max_fields: 100,
            max_aliases: 2,
            max_directives: 3,
        };
        let document = async_graphql::parser::parse_query(fragment_fan(10)).expect("parses");
        let refused = limits.check(&document).expect_err("too many fields");
        assert_eq!(
            refused,
            LimitExceeded::Fields {
                actual: 2048,
                max: 100
            }
        );
        assert_eq!(
            refused.to_string(),
            "the operation selects 2048 fields once its fragments are inlined; at most 100 are accepted"
        );
        assert_eq!(
            refused.extensions(),
            serde_json::json!({ "code": "OPERATION_LIMIT_EXCEEDED", "limit": "max_fields", "max": 100 })
        );
        let aliased = async_graphql::parser::parse_query(
            "{ ...F ...F } fragment F on Query { a: me { id } b: me { id } }",
        )
        .expect("parses");
        assert_eq!(
            limits.check(&aliased),
            Err(LimitExceeded::Aliases { actual: 4, max: 2 })
        );
        let skipped = async_graphql::parser::parse_query(
            "{ a @skip(if: false) @skip(if: false) @skip(if: false) @skip(if: false) }",
        )
        .expect("parses");
        assert_eq!(
            limits.check(&skipped),
            Err(LimitExceeded::Directives { actual: 4, max: 3 })
        );
        let deep = async_graphql::parser::parse_query("{ a { b { c { d } } } }").expect("parses");
        assert_eq!(
            limits.check(&deep),
            Err(LimitExceeded::Depth { actual: 4, max: 3 })
        );
    }
}
