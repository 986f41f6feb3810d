//! The serving graph: placeholders -> distances -> argmin, as TensorFlow
//! NodeDefs built only from ops that every TensorFlow since 1.x registers
//! (Const, Placeholder, ConcatV2, Cast, Square, Sum, Sqrt, MatMul, Mul, Add,
//! Sub, RealDiv, Maximum, ArgMin; ParseExampleV2, TensorFlow >= 2.1, for
//! receivers of serialized tf.Example protos). Every attr an op's OpDef declares is set, so the
//! graph imports whether or not the reader fills in defaults.

use super::proto::{
    attr_value::{ListValue, Value},
    AttrValue, DataType, GraphDef, NodeDef, TensorProto, TensorShapeProto, VersionDef,
};
use crate::float::{DType, Float};
use crate::kernels::{Metric, PreparedCentres};
use crate::matrix::MatRef;

/// GraphDef version of TensorFlow 2.15 (`tf.version.GRAPH_DEF_VERSION`),
/// whose op definitions this graph was checked against. Readers accept any
/// producer at or above their minimum (0 for every TensorFlow 2).
pub const GRAPH_DEF_PRODUCER: i32 = 1645;

/// Node names of the graph's public tensors (`<name>:0`).
pub const CLUSTERS_NODE: &str = "clusters";
/// The node of the normalised centres (cosine).
pub const CLUSTERS_NORMALIZED_NODE: &str = "clusters_normalized";
/// The node of the distances to every centre.
pub const ALL_DISTANCES_NODE: &str = "all_distances";
/// The node of the nearest centre.
pub const CLUSTER_INDEX_NODE: &str = "cluster_index";

/// One input placeholder of the graph.
pub struct Placeholder {
    /// The placeholder node of this input.
    pub node_name: String,
    /// Its number of columns.
    pub width: usize,
}

/// The string placeholder of a parsing graph (TensorFlow's name for it).
pub const EXAMPLES_NODE: &str = "input_example_tensor";

/// Builds the graph; `placeholders` are in feature order and their widths sum
/// to the centres' width (the caller checked).
pub fn build_graph<T: Float>(
    centres: MatRef<'_, T>,
    metric: Metric,
    placeholders: &[Placeholder],
) -> GraphDef {
    let mut g = Builder {
        nodes: Vec::new(),
        dtype: data_type::<T>(),
    };
    g.placeholders(placeholders);
    let inputs: Vec<(String, usize)> = placeholders
        .iter()
        .map(|p| (p.node_name.clone(), p.width))
        .collect();
    finish_graph(g, centres, metric, &inputs)
}

/// Builds the graph of a parsing receiver: serialized `tf.Example`s in
/// `input_example_tensor`, parsed by one ParseExampleV2 node into a float32
/// [n, width] tensor per feature (each feature required, as a
/// `tf.io.FixedLenFeature([width], tf.float32)` without default), cast to
/// the model's type and joined in order.
pub fn build_parsing_graph<T: Float>(
    centres: MatRef<'_, T>,
    metric: Metric,
    features: &[(String, usize)],
) -> GraphDef {
    let dtype = data_type::<T>();
    let mut g = Builder {
        nodes: Vec::new(),
        dtype,
    };
    g.node(
        EXAMPLES_NODE,
        "Placeholder",
        &[],
        vec![
            ("dtype", type_attr(DataType::DtString)),
            ("shape", shape_attr(&[-1])),
        ],
    );
    let strings = |g: &mut Builder, name: &str, values: Vec<Vec<u8>>| {
        let n = values.len() as i64;
        g.const_tensor(
            name,
            TensorProto {
                dtype: DataType::DtString as i32,
                tensor_shape: Some(TensorShapeProto::of(&[n])),
                string_val: values,
                ..Default::default()
            },
        )
    };
    let names = strings(&mut g, "ParseExample/names", vec![]);
    let sparse_keys = strings(&mut g, "ParseExample/sparse_keys", vec![]);
    let dense_keys = strings(
        &mut g,
        "ParseExample/dense_keys",
        features
            .iter()
            .map(|(n, _)| n.as_bytes().to_vec())
            .collect(),
    );
    let ragged_keys = strings(&mut g, "ParseExample/ragged_keys", vec![]);
    // An empty default makes a feature required.
    let defaults: Vec<String> = (0..features.len())
        .map(|i| {
            g.const_tensor(
                &format!("ParseExample/dense_default_{i}"),
                tensor(DataType::DtFloat, &[0], Vec::new()),
            )
        })
        .collect();
    let mut inputs: Vec<&str> = vec![
        EXAMPLES_NODE,
        &names,
        &sparse_keys,
        &dense_keys,
        &ragged_keys,
    ];
    inputs.extend(defaults.iter().map(String::as_str));
    let list = |value: ListValue| AttrValue {
        value: Some(Value::List(value)),
    };
    let parse = g.node(
        "ParseExample/ParseExampleV2",
        "ParseExampleV2",
        &inputs,
        vec![
            (
                "Tdense",
                list(ListValue {
                    r#type: vec![DataType::DtFloat as i32; features.len()],
                    ..Default::default()
                }),
            ),
            (
                "dense_shapes",
                list(ListValue {
                    shape: features
                        .iter()
                        .map(|(_, w)| TensorShapeProto::of(&[*w as i64]))
                        .collect(),
                    ..Default::default()
                }),
            ),
            ("num_sparse", int_attr(0)),
            ("sparse_types", list(ListValue::default())),
            ("ragged_value_types", list(ListValue::default())),
            ("ragged_split_types", list(ListValue::default())),
        ],
    );
    // No sparse or ragged outputs: the dense values are outputs 0..n.
    let parsed: Vec<(String, usize)> = features
        .iter()
        .enumerate()
        .map(|(i, (_, w))| {
            let out = if i == 0 {
                parse.clone()
            } else {
                format!("{parse}:{i}")
            };
            let cast = g.cast(
                &format!("ParseExample/cast_{i}"),
                &out,
                DataType::DtFloat,
                dtype,
            );
            (cast, *w)
        })
        .collect();
    finish_graph(g, centres, metric, &parsed)
}

impl Builder {
    fn placeholders(&mut self, placeholders: &[Placeholder]) {
        for p in placeholders {
            let dtype = self.dtype;
            self.node(
                &p.node_name,
                "Placeholder",
                &[],
                vec![
                    ("dtype", type_attr(dtype)),
                    ("shape", shape_attr(&[-1, p.width as i64])),
                ],
            );
        }
    }
}

/// The model part of the graph, over `inputs` (tensor names and widths, in
/// join order, of the model's type).
fn finish_graph<T: Float>(
    mut g: Builder,
    centres: MatRef<'_, T>,
    metric: Metric,
    inputs: &[(String, usize)],
) -> GraphDef {
    let dtype = g.dtype;
    let (k, d) = (centres.rows(), centres.cols());
    let x = if let [(only, _)] = inputs {
        only.clone()
    } else {
        let axis = g.const_i32("features/concat/axis", 1);
        let mut names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
        names.push(&axis);
        g.node(
            "features/concat",
            "ConcatV2",
            &names,
            vec![
                ("N", int_attr(inputs.len() as i64)),
                ("T", type_attr(dtype)),
                ("Tidx", type_attr(DataType::DtInt32)),
            ],
        )
    };

    // The centres exactly as training left them, for users to read back.
    let clusters = g.const_tensor(
        CLUSTERS_NODE,
        tensor(dtype, &[k as i64, d as i64], values_le(centres.as_slice())),
    );

    // The same per-centre values predict uses (PreparedCentres normalises
    // under cosine and precomputes squared norms), so both paths see the
    // same centres bit for bit.
    let prepared = PreparedCentres::new(centres, metric);
    let axis = g.const_i32("distances/axis", 1);
    let all_distances = match metric {
        Metric::SquaredEuclidean => {
            // max(||x||^2 - 2 x.c + ||c||^2, 0)
            let x_squared = g.unary("distances/x_squared", "Square", &x);
            let x_sq_norm = g.node(
                "distances/x_sq_norm",
                "Sum",
                &[&x_squared, &axis],
                vec![
                    ("T", type_attr(dtype)),
                    ("Tidx", type_attr(DataType::DtInt32)),
                    ("keep_dims", bool_attr(true)),
                ],
            );
            let x_dot_c = g.matmul_transpose_b("distances/x_dot_c", &x, &clusters);
            let two = g.const_scalar::<T>("distances/two", 2.0);
            let two_x_dot_c = g.binary("distances/two_x_dot_c", "Mul", &two, &x_dot_c);
            let difference = g.binary("distances/difference", "Sub", &x_sq_norm, &two_x_dot_c);
            let c_sq_norm = g.const_tensor(
                "distances/c_sq_norm",
                tensor(dtype, &[1, k as i64], values_le(prepared.sq_norms())),
            );
            let unclamped = g.binary("distances/unclamped", "Add", &difference, &c_sq_norm);
            let zero = g.const_scalar::<T>("distances/zero", 0.0);
            g.binary(ALL_DISTANCES_NODE, "Maximum", &unclamped, &zero)
        }
        Metric::Cosine => {
            // 1 - (x . c^) * inv, inv = 1 / max(||x||, 1e-12) taken in f64
            // and rounded to the model's type, exactly the order of
            // operations of predict (so float32 rows whose squared norm
            // under- or overflows float32 still get the right distance).
            let clusters_normalized = g.const_tensor(
                CLUSTERS_NORMALIZED_NODE,
                tensor(
                    dtype,
                    &[k as i64, d as i64],
                    values_le(prepared.centres().as_slice()),
                ),
            );
            let x_f64 = g.cast("distances/x_f64", &x, dtype, DataType::DtDouble);
            let f64_attr = || vec![("T", type_attr(DataType::DtDouble))];
            let x_squared = g.node("distances/x_squared", "Square", &[&x_f64], f64_attr());
            let x_sq_norm = g.node(
                "distances/x_sq_norm",
                "Sum",
                &[&x_squared, &axis],
                vec![
                    ("T", type_attr(DataType::DtDouble)),
                    ("Tidx", type_attr(DataType::DtInt32)),
                    ("keep_dims", bool_attr(true)),
                ],
            );
            let x_norm = g.node("distances/x_norm", "Sqrt", &[&x_sq_norm], f64_attr());
            let floor = g.const_tensor(
                "distances/norm_floor",
                tensor(
                    DataType::DtDouble,
                    &[],
                    crate::kernels::COSINE_NORM_FLOOR.to_le_bytes().to_vec(),
                ),
            );
            let x_norm_floored = g.node(
                "distances/x_norm_floored",
                "Maximum",
                &[&x_norm, &floor],
                f64_attr(),
            );
            let one_f64 = g.const_tensor(
                "distances/one_f64",
                tensor(DataType::DtDouble, &[], 1f64.to_le_bytes().to_vec()),
            );
            let inv_norm_f64 = g.node(
                "distances/inv_norm_f64",
                "RealDiv",
                &[&one_f64, &x_norm_floored],
                f64_attr(),
            );
            let inv_norm = g.cast(
                "distances/inv_norm",
                &inv_norm_f64,
                DataType::DtDouble,
                dtype,
            );
            let x_dot_c = g.matmul_transpose_b("distances/x_dot_c", &x, &clusters_normalized);
            let similarity = g.binary("distances/similarity", "Mul", &x_dot_c, &inv_norm);
            let one = g.const_scalar::<T>("distances/one", 1.0);
            g.binary(ALL_DISTANCES_NODE, "Sub", &one, &similarity)
        }
    };
    // ArgMin returns the first minimum, so ties go to the lowest index as in
    // predict.
    let dimension = g.const_i32("cluster_index/dimension", 1);
    g.node(
        CLUSTER_INDEX_NODE,
        "ArgMin",
        &[&all_distances, &dimension],
        vec![
            ("T", type_attr(dtype)),
            ("Tidx", type_attr(DataType::DtInt32)),
            ("output_type", type_attr(DataType::DtInt64)),
        ],
    );

    GraphDef {
        node: g.nodes,
        versions: Some(VersionDef {
            producer: GRAPH_DEF_PRODUCER,
            min_consumer: 0,
            bad_consumers: Vec::new(),
        }),
    }
}

/// The TensorFlow dtype of `T`.
pub fn data_type<T: Float>() -> DataType {
    match T::DTYPE {
        DType::F32 => DataType::DtFloat,
        DType::F64 => DataType::DtDouble,
    }
}

struct Builder {
    nodes: Vec<NodeDef>,
    dtype: DataType,
}

impl Builder {
    /// Adds a node and returns its name (what later nodes list as input).
    fn node(
        &mut self,
        name: &str,
        op: &str,
        inputs: &[&str],
        attrs: Vec<(&str, AttrValue)>,
    ) -> String {
        self.nodes.push(NodeDef {
            name: name.to_owned(),
            op: op.to_owned(),
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            device: String::new(),
            attr: attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        });
        name.to_owned()
    }

    fn unary(&mut self, name: &str, op: &str, x: &str) -> String {
        let t = type_attr(self.dtype);
        self.node(name, op, &[x], vec![("T", t)])
    }

    fn binary(&mut self, name: &str, op: &str, a: &str, b: &str) -> String {
        let t = type_attr(self.dtype);
        self.node(name, op, &[a, b], vec![("T", t)])
    }

    /// Casts `x` from `from` to `to`; no node when they are the same type.
    fn cast(&mut self, name: &str, x: &str, from: DataType, to: DataType) -> String {
        if from == to {
            return x.to_owned();
        }
        self.node(
            name,
            "Cast",
            &[x],
            vec![
                ("SrcT", type_attr(from)),
                ("DstT", type_attr(to)),
                ("Truncate", bool_attr(false)),
            ],
        )
    }

    fn matmul_transpose_b(&mut self, name: &str, a: &str, b: &str) -> String {
        let t = type_attr(self.dtype);
        self.node(
            name,
            "MatMul",
            &[a, b],
            vec![
                ("T", t),
                ("transpose_a", bool_attr(false)),
                ("transpose_b", bool_attr(true)),
            ],
        )
    }

    fn const_tensor(&mut self, name: &str, value: TensorProto) -> String {
        let dtype = AttrValue {
            value: Some(Value::Type(value.dtype)),
        };
        self.node(
            name,
            "Const",
            &[],
            vec![
                ("dtype", dtype),
                (
                    "value",
                    AttrValue {
                        value: Some(Value::Tensor(value)),
                    },
                ),
            ],
        )
    }

    fn const_scalar<T: Float>(&mut self, name: &str, value: f64) -> String {
        let v = [T::from_f64_lossy(value)];
        self.const_tensor(name, tensor(self.dtype, &[], values_le(&v)))
    }

    fn const_i32(&mut self, name: &str, value: i32) -> String {
        self.const_tensor(
            name,
            tensor(DataType::DtInt32, &[], value.to_le_bytes().to_vec()),
        )
    }
}

fn tensor(dtype: DataType, dims: &[i64], content: Vec<u8>) -> TensorProto {
    TensorProto {
        dtype: dtype as i32,
        tensor_shape: Some(TensorShapeProto::of(dims)),
        tensor_content: content,
        ..Default::default()
    }
}

/// Values as TensorFlow's `tensor_content` wants them: packed, little-endian
/// (every platform TensorFlow ships for is little-endian).
fn values_le<T: Float>(values: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(std::mem::size_of_val(values));
    for v in values {
        match T::DTYPE {
            DType::F32 => out.extend_from_slice(&(v.to_f64_exact() as f32).to_le_bytes()),
            DType::F64 => out.extend_from_slice(&v.to_f64_exact().to_le_bytes()),
        }
    }
    out
}

/// A `type` attribute of this data type.
pub fn type_attr(t: DataType) -> AttrValue {
    AttrValue {
        value: Some(Value::Type(t as i32)),
    }
}

fn int_attr(i: i64) -> AttrValue {
    AttrValue {
        value: Some(Value::I(i)),
    }
}

fn bool_attr(b: bool) -> AttrValue {
    AttrValue {
        value: Some(Value::B(b)),
    }
}

fn shape_attr(dims: &[i64]) -> AttrValue {
    AttrValue {
        value: Some(Value::Shape(TensorShapeProto::of(dims))),
    }
}
