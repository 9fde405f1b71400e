//! Tables and schemas: `GET /dap/query/{ns}/table` and `.../table/{t}/schema`.

use http::StatusCode;
use serde_json::json;

use super::Heart;
use super::reply::{Resp, json_response, to_json};
use crate::data::{self, Shape, TableDef};

/// `GET /dap/query/{ns}/table`.
pub(super) fn list_tables(heart: &Heart, ns: &str) -> Resp {
    match data::tables(ns) {
        Some(tables) => to_json(StatusCode::OK, &json!({ "tables": tables })),
        None => heart.not_found("namespace", ns),
    }
}

/// The table `ns.t`, or the 404 that names what is missing.
pub(super) fn lookup(heart: &Heart, ns: &str, t: &str) -> Result<&'static TableDef, Box<Resp>> {
    if data::tables(ns).is_none() {
        return Err(Box::new(heart.not_found("namespace", ns)));
    }
    data::table(ns, t).ok_or_else(|| Box::new(heart.not_found("table", t)))
}

/// `GET /dap/query/{ns}/table/{t}/schema`: the schema version in effect now.
pub(super) fn schema(heart: &Heart, ns: &str, t: &str, now: i64) -> Resp {
    match lookup(heart, ns, t) {
        Ok(def) => {
            let epoch = heart.lock().schema((def.namespace, def.name)).epoch_at(now);
            let shape = Shape { table: def, epoch };
            json_response(StatusCode::OK, crate::schema::versioned_schema_json(&shape))
        }
        Err(r) => *r,
    }
}
