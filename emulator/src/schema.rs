//! JSON Schemas of the synthetic tables, shaped like DAP's.

use crate::data::{Field, FieldType, TableDef, write_json_str};

fn field_schema(out: &mut String, f: &Field, table: &str) {
    let title = format!("The {} of the `{table}` record.", f.name.replace('_', " "));
    out.push('{');
    match f.ty {
        FieldType::Int => out.push_str("\"type\":\"integer\",\"format\":\"int64\""),
        FieldType::Float => out.push_str("\"type\":\"number\",\"format\":\"double\""),
        FieldType::Bool => out.push_str("\"type\":\"boolean\""),
        FieldType::Str(max) => {
            out.push_str(&format!("\"type\":\"string\",\"maxLength\":{max}"));
        }
        FieldType::Text => out.push_str("\"type\":\"string\""),
        FieldType::Timestamp => out.push_str("\"type\":\"string\",\"format\":\"date-time\""),
        FieldType::Enum(opts) => {
            out.push_str("\"type\":\"string\",\"enum\":[");
            for (i, o) in opts.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_str(out, o);
            }
            out.push(']');
        }
        FieldType::Object(sub) => {
            out.push_str("\"type\":\"object\",");
            object_body(out, sub, table);
        }
    }
    out.push_str(",\"title\":");
    write_json_str(out, &title);
    out.push('}');
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
    out.push_str("},\"additionalProperties\":false,\"required\":[");
    let mut first = true;
    for f in fields.iter().filter(|f| f.required) {
        if !first {
            out.push(',');
        }
        first = false;
        write_json_str(out, f.name);
    }
    out.push(']');
}

/// The body of `GET .../schema`: `{"schema": {..}, "version": N}`.
pub(crate) fn versioned_schema_json(t: &TableDef) -> String {
    let name = t.name;
    let mut out = String::with_capacity(4096);
    out.push_str(
        "{\"schema\":{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"type\":\"object\",\"properties\":{",
    );
    out.push_str(
        "\"key\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\",\"format\":\"int64\",\"title\":\"The primary key of the record.\"}},\"additionalProperties\":false,\"required\":[\"id\"],\"title\":\"Primary key.\"},",
    );
    out.push_str("\"value\":{\"type\":\"object\",");
    object_body(&mut out, t.values, name);
    out.push_str(",\"title\":\"Data fields.\"},");
    out.push_str(
        "\"meta\":{\"type\":\"object\",\"properties\":{\"ts\":{\"type\":\"string\",\"format\":\"date-time\",\"title\":\"Timestamp when the record was last updated in DAP.\"},\"action\":{\"type\":\"string\",\"enum\":[\"U\",\"D\"],\"title\":\"U = upsert (insert or update), D = delete.\"}},\"additionalProperties\":false,\"required\":[\"ts\"],\"title\":\"Record metadata.\"}",
    );
    out.push_str("},\"additionalProperties\":false,\"required\":[\"key\",\"meta\"],\"title\":");
    write_json_str(
        &mut out,
        &format!("Synthetic `{}.{name}` table (DAP emulator).", t.namespace),
    );
    out.push_str(&format!("}},\"version\":{}}}", t.schema_version));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn schemas_are_valid_json() {
        for t in crate::data::TABLES {
            let v: serde_json::Value =
                serde_json::from_str(&super::versioned_schema_json(t)).unwrap();
            assert_eq!(v["version"], t.schema_version);
            assert!(v["schema"]["properties"]["value"]["properties"].is_object());
        }
    }
}
