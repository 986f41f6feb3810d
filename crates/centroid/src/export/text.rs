//! Protocol-buffer text format (what TensorFlow writes as `saved_model.pbtxt`)
//! for the messages in [`super::proto`].
//!
//! The output follows protobuf's own printer: one field per line, nested
//! messages in braces, map entries as `{ key: .. value { .. } }`, enum values
//! by name, and proto3 scalars left out when they hold their default (except
//! inside a oneof, where being set is itself information). Strings and bytes
//! are quoted with every byte outside printable ASCII written as a three-digit
//! octal escape, which TensorFlow's text parser reads back byte for byte.

use std::fmt::Write as _;

use super::proto::{
    attr_value::{ListValue, Value},
    AttrValue, DataType, GraphDef, MetaGraphDef, MetaInfoDef, NodeDef, SavedModel, SignatureDef,
    TensorInfo, TensorProto, TensorShapeProto, VersionDef,
};

/// Renders `model` as text format.
pub fn to_text(model: &SavedModel) -> String {
    let mut w = TextWriter::default();
    model.write_text(&mut w);
    w.out
}

/// Accumulates text-format lines at the current nesting depth.
#[derive(Default)]
pub struct TextWriter {
    out: String,
    depth: usize,
}

impl TextWriter {
    fn line(&mut self, body: std::fmt::Arguments<'_>) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
        // Writing into a String cannot fail.
        let _ = self.out.write_fmt(body);
        self.out.push('\n');
    }

    fn message(&mut self, name: &str, body: impl FnOnce(&mut TextWriter)) {
        self.line(format_args!("{name} {{"));
        self.depth += 1;
        body(self);
        self.depth -= 1;
        self.line(format_args!("}}"));
    }

    fn bytes(&mut self, name: &str, value: &[u8]) {
        let quoted = quote(value);
        self.line(format_args!("{name}: \"{quoted}\""));
    }

    fn string(&mut self, name: &str, value: &str) {
        self.bytes(name, value.as_bytes());
    }

    fn string_nonempty(&mut self, name: &str, value: &str) {
        if !value.is_empty() {
            self.string(name, value);
        }
    }

    fn int(&mut self, name: &str, value: i64) {
        self.line(format_args!("{name}: {value}"));
    }

    fn int_nonzero(&mut self, name: &str, value: i64) {
        if value != 0 {
            self.int(name, value);
        }
    }

    fn boolean(&mut self, name: &str, value: bool) {
        self.line(format_args!("{name}: {value}"));
    }

    fn float(&mut self, name: &str, value: f64) {
        let text = float_text(value);
        self.line(format_args!("{name}: {text}"));
    }

    fn dtype(&mut self, name: &str, value: i32) {
        match DataType::name_of(value) {
            Some(enum_name) => self.line(format_args!("{name}: {enum_name}")),
            // Text format also accepts an enum's number.
            None => self.int(name, value.into()),
        }
    }

    fn dtype_nondefault(&mut self, name: &str, value: i32) {
        if value != 0 {
            self.dtype(name, value);
        }
    }
}

/// A float as text format reads it: shortest round-trip digits, and the
/// spellings `inf`, `-inf` and `nan` that protobuf's parser accepts.
fn float_text(value: f64) -> String {
    if value.is_nan() {
        "nan".into()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{value:?}")
    }
}

/// Escapes `bytes` for a double-quoted text-format string.
fn quote(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'"' => s.push_str("\\\""),
            b'\'' => s.push_str("\\'"),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\{b:03o}");
            }
        }
    }
    s
}

/// A message that can print its fields (not its own braces).
pub trait WriteText {
    /// Writes the message as text format fields.
    fn write_text(&self, w: &mut TextWriter);
}

impl WriteText for SavedModel {
    fn write_text(&self, w: &mut TextWriter) {
        w.int_nonzero(
            "saved_model_schema_version",
            self.saved_model_schema_version,
        );
        for meta_graph in &self.meta_graphs {
            w.message("meta_graphs", |w| meta_graph.write_text(w));
        }
    }
}

impl WriteText for MetaGraphDef {
    fn write_text(&self, w: &mut TextWriter) {
        if let Some(info) = &self.meta_info_def {
            w.message("meta_info_def", |w| info.write_text(w));
        }
        if let Some(graph) = &self.graph_def {
            w.message("graph_def", |w| graph.write_text(w));
        }
        for (key, signature) in &self.signature_def {
            w.message("signature_def", |w| {
                w.string("key", key);
                w.message("value", |w| signature.write_text(w));
            });
        }
    }
}

impl WriteText for MetaInfoDef {
    fn write_text(&self, w: &mut TextWriter) {
        w.string_nonempty("meta_graph_version", &self.meta_graph_version);
        for tag in &self.tags {
            w.string("tags", tag);
        }
        w.string_nonempty("tensorflow_version", &self.tensorflow_version);
        w.string_nonempty("tensorflow_git_version", &self.tensorflow_git_version);
        if self.stripped_default_attrs {
            w.boolean("stripped_default_attrs", true);
        }
    }
}

impl WriteText for SignatureDef {
    fn write_text(&self, w: &mut TextWriter) {
        for (field, map) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            for (key, info) in map {
                w.message(field, |w| {
                    w.string("key", key);
                    w.message("value", |w| info.write_text(w));
                });
            }
        }
        w.string_nonempty("method_name", &self.method_name);
    }
}

impl WriteText for TensorInfo {
    fn write_text(&self, w: &mut TextWriter) {
        // `name` is a oneof member: printed whenever set, even if empty.
        w.string("name", &self.name);
        w.dtype_nondefault("dtype", self.dtype);
        if let Some(shape) = &self.tensor_shape {
            w.message("tensor_shape", |w| shape.write_text(w));
        }
    }
}

impl WriteText for GraphDef {
    fn write_text(&self, w: &mut TextWriter) {
        for node in &self.node {
            w.message("node", |w| node.write_text(w));
        }
        if let Some(versions) = &self.versions {
            w.message("versions", |w| versions.write_text(w));
        }
    }
}

impl WriteText for VersionDef {
    fn write_text(&self, w: &mut TextWriter) {
        w.int_nonzero("producer", self.producer.into());
        w.int_nonzero("min_consumer", self.min_consumer.into());
        for &bad in &self.bad_consumers {
            w.int("bad_consumers", bad.into());
        }
    }
}

impl WriteText for NodeDef {
    fn write_text(&self, w: &mut TextWriter) {
        w.string_nonempty("name", &self.name);
        w.string_nonempty("op", &self.op);
        for input in &self.input {
            w.string("input", input);
        }
        w.string_nonempty("device", &self.device);
        for (key, value) in &self.attr {
            w.message("attr", |w| {
                w.string("key", key);
                w.message("value", |w| value.write_text(w));
            });
        }
    }
}

impl WriteText for AttrValue {
    fn write_text(&self, w: &mut TextWriter) {
        match &self.value {
            None => {}
            Some(Value::List(list)) => w.message("list", |w| list.write_text(w)),
            Some(Value::S(s)) => w.bytes("s", s),
            Some(Value::I(i)) => w.int("i", *i),
            Some(Value::F(f)) => w.float("f", f64::from(*f)),
            Some(Value::B(b)) => w.boolean("b", *b),
            Some(Value::Type(t)) => w.dtype("type", *t),
            Some(Value::Shape(shape)) => w.message("shape", |w| shape.write_text(w)),
            Some(Value::Tensor(tensor)) => w.message("tensor", |w| tensor.write_text(w)),
        }
    }
}

impl WriteText for ListValue {
    fn write_text(&self, w: &mut TextWriter) {
        for s in &self.s {
            w.bytes("s", s);
        }
        for &i in &self.i {
            w.int("i", i);
        }
        for &f in &self.f {
            w.float("f", f64::from(f));
        }
        for &b in &self.b {
            w.boolean("b", b);
        }
        for &t in &self.r#type {
            w.dtype("type", t);
        }
        for shape in &self.shape {
            w.message("shape", |w| shape.write_text(w));
        }
        for tensor in &self.tensor {
            w.message("tensor", |w| tensor.write_text(w));
        }
    }
}

impl WriteText for TensorProto {
    fn write_text(&self, w: &mut TextWriter) {
        w.dtype_nondefault("dtype", self.dtype);
        if let Some(shape) = &self.tensor_shape {
            w.message("tensor_shape", |w| shape.write_text(w));
        }
        w.int_nonzero("version_number", self.version_number.into());
        if !self.tensor_content.is_empty() {
            w.bytes("tensor_content", &self.tensor_content);
        }
        for &v in &self.float_val {
            w.float("float_val", f64::from(v));
        }
        for &v in &self.double_val {
            w.float("double_val", v);
        }
        for &v in &self.int_val {
            w.int("int_val", v.into());
        }
        for v in &self.string_val {
            w.bytes("string_val", v);
        }
        for &v in &self.int64_val {
            w.int("int64_val", v);
        }
    }
}

impl WriteText for TensorShapeProto {
    fn write_text(&self, w: &mut TextWriter) {
        for dim in &self.dim {
            w.message("dim", |w| {
                w.int_nonzero("size", dim.size);
                w.string_nonempty("name", &dim.name);
            });
        }
        if self.unknown_rank {
            w.boolean("unknown_rank", true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_everything_outside_printable_ascii() {
        assert_eq!(quote(b"a\"b'c\\d\n\r\t"), "a\\\"b\\'c\\\\d\\n\\r\\t");
        assert_eq!(
            quote(&[0, 7, 0x7f, 0x80, 0xff]),
            "\\000\\007\\177\\200\\377"
        );
        assert_eq!(quote("é".as_bytes()), "\\303\\251");
    }

    #[test]
    fn floats_use_round_trip_digits_and_protobuf_spellings() {
        assert_eq!(float_text(1e-12), "1e-12");
        assert_eq!(float_text(0.5), "0.5");
        assert_eq!(float_text(f64::INFINITY), "inf");
        assert_eq!(float_text(f64::NEG_INFINITY), "-inf");
        assert_eq!(float_text(f64::NAN), "nan");
        assert_eq!(
            float_text(0.1f32 as f64).parse::<f64>().ok(),
            Some(0.1f32 as f64)
        );
    }

    #[test]
    fn oneof_members_print_even_when_default() {
        let mut w = TextWriter::default();
        AttrValue {
            value: Some(Value::B(false)),
        }
        .write_text(&mut w);
        AttrValue {
            value: Some(Value::I(0)),
        }
        .write_text(&mut w);
        assert_eq!(w.out, "b: false\ni: 0\n");
    }

    #[test]
    fn nested_messages_and_maps_are_indented_and_enums_named() {
        let info = TensorInfo {
            name: "x:0".into(),
            dtype: DataType::DtDouble as i32,
            tensor_shape: Some(TensorShapeProto::of(&[-1, 3])),
        };
        let mut signature = SignatureDef {
            method_name: "m".into(),
            ..Default::default()
        };
        signature.inputs.insert("x".into(), info);
        let mut w = TextWriter::default();
        signature.write_text(&mut w);
        let expected = "inputs {\n  key: \"x\"\n  value {\n    name: \"x:0\"\n    dtype: DT_DOUBLE\n    tensor_shape {\n      dim {\n        size: -1\n      }\n      dim {\n        size: 3\n      }\n    }\n  }\n}\nmethod_name: \"m\"\n";
        assert_eq!(w.out, expected);
    }
}
