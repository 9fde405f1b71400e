//! JSON Schemas of the synthetic tables, shaped like DAP's: `key`, `value` and `meta`
//! objects; columns with a `title` and a `description`; `maxLength`, `enum`,
//! `"format": "date-time"`, integers as `int32`/`int64`, numbers as `float64`; nested
//! objects with `additionalProperties: false`, arrays with `items`, and free-form
//! objects with `additionalProperties: true`.

use std::fmt::Write as _;

use crate::data::{Column, Field, FieldType, Shape, write_json_str};

/// Writes the type keywords of `ty` (without braces).
fn type_keywords(out: &mut String, ty: FieldType, extra_enum: &[&str], table: &str) {
    use FieldType as T;
    match ty {
        T::Int | T::BigInt => out.push_str("\"type\":\"integer\",\"format\":\"int64\""),
        T::Int32 => out.push_str("\"type\":\"integer\",\"format\":\"int32\""),
        T::Float | T::FloatSpecial => out.push_str("\"type\":\"number\",\"format\":\"float64\""),
        T::Bool => out.push_str("\"type\":\"boolean\""),
        T::Str(max) => {
            let _ = write!(out, "\"type\":\"string\",\"maxLength\":{max}");
        }
        T::Text => out.push_str("\"type\":\"string\""),
        T::Timestamp => out.push_str("\"type\":\"string\",\"format\":\"date-time\""),
        T::Enum(opts) => {
            out.push_str("\"type\":\"string\",\"enum\":[");
            for (i, o) in opts.iter().chain(extra_enum).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_str(out, o);
            }
            out.push(']');
        }
        T::Object(sub) => {
            out.push_str("\"type\":\"object\",");
            object_body(out, sub, table);
        }
        T::Array(item) => {
            out.push_str("\"type\":\"array\",\"items\":{");
            type_keywords(out, *item, &[], table);
            out.push('}');
        }
        T::Json => out.push_str("\"type\":\"object\",\"additionalProperties\":true"),
    }
}

/// The kind of a column in words, for its description.
fn kind(ty: FieldType) -> &'static str {
    use FieldType as T;
    match ty {
        T::Int | T::BigInt => "int64",
        T::Int32 => "int32",
        T::Float | T::FloatSpecial => "float64",
        T::Bool => "boolean",
        T::Str(_) | T::Text => "string",
        T::Timestamp => "date-time",
        T::Enum(_) => "enumerated",
        T::Object(_) | T::Json => "JSON object",
        T::Array(_) => "JSON array",
    }
}

fn field_schema(out: &mut String, f: &Field, table: &str) {
    out.push('{');
    type_keywords(out, f.ty, &[], table);
    out.push_str(",\"title\":");
    write_json_str(out, &title(f.name, table));
    out.push('}');
}

fn title(name: &str, table: &str) -> String {
    format!("The {} of the `{table}` record.", name.replace('_', " "))
}

fn column_schema(out: &mut String, c: &Column, table: &str) {
    out.push('{');
    type_keywords(out, c.ty, c.extra_enum, table);
    out.push_str(",\"title\":");
    write_json_str(out, &title(c.name, table));
    out.push_str(",\"description\":");
    let null = if c.required { "never" } else { "may be" };
    let added = if c.since_epoch > 0 {
        " Added by a later schema version; older records hold NULL."
    } else {
        ""
    };
    write_json_str(
        out,
        &format!("A synthetic {} column; {null} NULL.{added}", kind(c.ty)),
    );
    out.push('}');
}

fn name_list<'a>(out: &mut String, names: impl Iterator<Item = &'a str>) {
    out.push('[');
    for (i, n) in names.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(out, n);
    }
    out.push(']');
}

/// Writes `"properties":{..},"additionalProperties":false,"required":[..]`.
fn object_body(out: &mut String, fields: &[Field], table: &str) {
    out.push_str("\"properties\":{");
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(out, f.name);
        out.push(':');
        field_schema(out, f, table);
    }
    out.push_str("},\"additionalProperties\":false,\"required\":");
    name_list(out, fields.iter().filter(|f| f.required).map(|f| f.name));
}

fn value_object(out: &mut String, columns: &[Column], table: &str) {
    out.push_str("\"value\":{\"type\":\"object\",\"properties\":{");
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(out, c.name);
        out.push(':');
        column_schema(out, c, table);
    }
    out.push_str("},\"additionalProperties\":false,\"required\":");
    name_list(out, columns.iter().filter(|c| c.required).map(|c| c.name));
    out.push_str(",\"title\":\"Data fields.\"},");
}

const KEY: &str = "\"key\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\",\"format\":\"int64\",\"title\":\"The primary key of the record.\"}},\"additionalProperties\":false,\"required\":[\"id\"],\"title\":\"Primary key.\"},";

const META: &str = "\"meta\":{\"type\":\"object\",\"properties\":{\"ts\":{\"type\":\"string\",\"format\":\"date-time\",\"title\":\"Timestamp when the record was last updated in DAP.\"},\"action\":{\"type\":\"string\",\"enum\":[\"U\",\"D\"],\"title\":\"U = upsert (insert or update), D = delete.\"}},\"additionalProperties\":false,\"required\":[\"ts\"],\"title\":\"Record metadata.\"}";

/// The body of `GET .../schema`: `{"schema": {..}, "version": N}`.
pub(crate) fn versioned_schema_json(shape: &Shape) -> String {
    let t = shape.table;
    let mut out = String::with_capacity(4096);
    out.push_str(
        "{\"schema\":{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"type\":\"object\",\"properties\":{",
    );
    out.push_str(KEY);
    value_object(&mut out, &shape.columns(), t.name);
    out.push_str(META);
    out.push_str("},\"additionalProperties\":false,\"required\":[\"key\",\"meta\"],\"title\":");
    write_json_str(
        &mut out,
        &format!(
            "Synthetic `{}.{}` table (DAP emulator).",
            t.namespace, t.name
        ),
    );
    let _ = write!(out, "}},\"version\":{}}}", shape.version());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::TABLES;

    #[test]
    fn schemas_are_valid_json() {
        for t in TABLES {
            for epoch in 0..=3 {
                let shape = Shape { table: t, epoch };
                let v: serde_json::Value =
                    serde_json::from_str(&versioned_schema_json(&shape)).unwrap();
                assert_eq!(v["version"], t.schema_version + epoch);
                let props = &v["schema"]["properties"]["value"]["properties"];
                assert_eq!(
                    props.as_object().unwrap().len(),
                    t.values.len() + epoch as usize
                );
            }
        }
    }

    #[test]
    fn types_are_declared_as_dap_declares_them() {
        let t = crate::data::table("new_quizzes", "items").unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&versioned_schema_json(&Shape { table: t, epoch: 1 })).unwrap();
        let p = &v["schema"]["properties"]["value"]["properties"];
        assert_eq!(p["position"]["format"], "int32");
        assert_eq!(p["external_id"]["format"], "int64");
        assert_eq!(p["points"]["format"], "float64");
        assert_eq!(p["created_at"]["format"], "date-time");
        assert_eq!(p["title"]["maxLength"], 255);
        assert_eq!(p["tags"]["items"]["maxLength"], 64);
        assert_eq!(p["properties"]["type"], "object");
        assert!(
            p["item_type"]["enum"]
                .as_array()
                .unwrap()
                .contains(&"archived".into())
        );
        assert!(
            p["external_reference"]["description"]
                .as_str()
                .unwrap()
                .contains("later")
        );
        let t = crate::data::table("new_quizzes", "quiz_settings").unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&versioned_schema_json(&Shape::first(t))).unwrap();
        let settings = &v["schema"]["properties"]["value"]["properties"]["settings"];
        assert_eq!(settings["additionalProperties"], true);
        let choices = &v["schema"]["properties"]["value"]["properties"]["choices"];
        assert_eq!(choices["items"]["additionalProperties"], false);
        assert!(settings.get("properties").is_none());
    }
}
