//! Whether a subgraph's SDL describes everything a client sees: every type, field, argument,
//! input field and enum value (GraphiQL and generated clients show these texts). Federation's
//! own definitions (names starting with `_`) and the built-in scalars are left out.

use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};

const BUILT_IN: [&str; 5] = ["String", "Int", "Float", "Boolean", "ID"];

/// What `sdl` leaves undescribed, as `Type`, `Type.field`, `Type.field(argument)` and
/// `Enum.VALUE`; empty when everything is described. Panics when `sdl` does not parse.
pub fn undescribed(sdl: &str) -> Vec<String> {
    let document = async_graphql::parser::parse_schema(sdl).expect("the SDL parses");
    let mut missing = Vec::new();
    for definition in &document.definitions {
        let TypeSystemDefinition::Type(definition) = definition else {
            continue;
        };
        let definition = &definition.node;
        let name = definition.name.node.as_str();
        if name.starts_with('_') || BUILT_IN.contains(&name) {
            continue;
        }
        if definition.description.is_none() && !definition.extend {
            missing.push(name.to_owned());
        }
        let fields = match &definition.kind {
            TypeKind::Object(object) => &object.fields,
            TypeKind::Interface(interface) => &interface.fields,
            TypeKind::InputObject(input) => {
                for field in &input.fields {
                    if field.node.description.is_none() {
                        missing.push(format!("{name}.{}", field.node.name.node));
                    }
                }
                continue;
            }
            TypeKind::Enum(enumeration) => {
                for value in &enumeration.values {
                    if value.node.description.is_none() {
                        missing.push(format!("{name}.{}", value.node.value.node));
                    }
                }
                continue;
            }
            TypeKind::Scalar | TypeKind::Union(_) => continue,
        };
        for field in fields {
            let field = &field.node;
            if field.name.node.starts_with('_') {
                continue;
            }
            if field.description.is_none() {
                missing.push(format!("{name}.{}", field.name.node));
            }
            for argument in &field.arguments {
                if argument.node.description.is_none() {
                    missing.push(format!(
                        "{name}.{}({})",
                        field.name.node, argument.node.name.node
                    ));
                }
            }
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_undescribed_thing_is_named() {
        let sdl = r#"
            "described" type Query { "yes" a(x: Int, "yes" y: Int): Int b: Int _service: Int }
            type Bare { "yes" c: Int }
            "described" enum Color { "yes" RED GREEN }
            "described" input Filter { "yes" a: Int b: Int }
            union Either = Query | Bare
            scalar String
        "#;
        assert_eq!(
            undescribed(sdl),
            [
                "Query.a(x)",
                "Query.b",
                "Bare",
                "Color.GREEN",
                "Filter.b",
                "Either"
            ]
        );
    }
}
