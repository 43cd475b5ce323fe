//! Shared OTLP/JSON messages: `AnyValue`, `KeyValue`, `Resource`, `InstrumentationScope`.

use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::Value;

use super::reader::{JsonResult, Obj};

pub fn any_value(value: &Value, path: String) -> JsonResult<AnyValue> {
    let o = Obj::new(value, path)?;
    let value = if o.has("stringValue") {
        Some(any_value::Value::StringValue(o.string("stringValue")?))
    } else if o.has("boolValue") {
        Some(any_value::Value::BoolValue(o.bool("boolValue")?))
    } else if o.has("intValue") {
        Some(any_value::Value::IntValue(o.i64("intValue")?))
    } else if o.has("doubleValue") {
        Some(any_value::Value::DoubleValue(o.f64("doubleValue")?))
    } else if o.has("bytesValue") {
        Some(any_value::Value::BytesValue(o.base64("bytesValue")?))
    } else if let Some(array) = o.object("arrayValue")? {
        let values =
            array.array("values")?.into_iter().map(|(v, p)| any_value(v, p)).collect::<JsonResult<_>>()?;
        Some(any_value::Value::ArrayValue(ArrayValue { values }))
    } else if let Some(list) = o.object("kvlistValue")? {
        Some(any_value::Value::KvlistValue(KeyValueList { values: key_values(&list, "values")? }))
    } else {
        // `{}` is a valid, empty AnyValue.
        None
    };
    Ok(AnyValue { value })
}

/// A `KeyValue` list field (attributes).
pub fn key_values(o: &Obj, key: &str) -> JsonResult<Vec<KeyValue>> {
    o.objects(key)?
        .into_iter()
        .map(|kv| {
            let value = match kv.get("value") {
                Some(value) => Some(any_value(value, format!("{}.value", kv.path))?),
                None => None,
            };
            Ok(KeyValue { key: kv.string("key")?, value, ..Default::default() })
        })
        .collect()
}

pub fn resource(o: &Obj) -> JsonResult<Option<Resource>> {
    let Some(r) = o.object("resource")? else {
        return Ok(None);
    };
    Ok(Some(Resource {
        attributes: key_values(&r, "attributes")?,
        dropped_attributes_count: r.u32("droppedAttributesCount")?,
        ..Default::default()
    }))
}

pub fn scope(o: &Obj) -> JsonResult<Option<InstrumentationScope>> {
    let Some(s) = o.object("scope")? else {
        return Ok(None);
    };
    Ok(Some(InstrumentationScope {
        name: s.string("name")?,
        version: s.string("version")?,
        attributes: key_values(&s, "attributes")?,
        dropped_attributes_count: s.u32("droppedAttributesCount")?,
    }))
}
