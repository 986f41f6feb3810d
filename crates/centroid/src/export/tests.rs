//! Checks of the written SavedModel without TensorFlow: the files decode back
//! with prost into the structure TensorFlow expects, the text format holds the
//! same content, and the graph, run by a small interpreter of the ops' TensorFlow
//! semantics, computes the brute-force distances and argmin. (The pytest
//! tests/export/test_savedmodel_tf.py runs the same exports in real
//! TensorFlow.)

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::proto::{
    attr_value::Value, AttrValue, DataType, GraphDef, NodeDef, SavedModel, TensorProto,
};
use super::*;
use crate::float::Float;
use crate::{MatRef, Metric};

fn read_pb(dir: &Path) -> SavedModel {
    let bytes = fs::read(dir.join(SAVED_MODEL_PB)).expect("saved_model.pb exists");
    SavedModel::decode(bytes.as_slice()).expect("saved_model.pb decodes")
}

fn random_matrix(rng: &mut ChaCha8Rng, rows: usize, cols: usize, scale: f64) -> Vec<f64> {
    (0..rows * cols)
        .map(|_| rng.gen_range(-1.0..1.0) * scale)
        .collect()
}

fn attr<'a>(node: &'a NodeDef, key: &str) -> &'a Value {
    node.attr
        .get(key)
        .and_then(|a| a.value.as_ref())
        .unwrap_or_else(|| panic!("node {} ({}) lacks attr {key}", node.name, node.op))
}

fn type_of(node: &NodeDef, key: &str) -> DataType {
    match attr(node, key) {
        Value::Type(t) => DataType::try_from(*t).expect("known dtype"),
        other => panic!("attr {key} of {} is {other:?}, not a type", node.name),
    }
}

// ---------------------------------------------------------------------------
// A tiny interpreter of the ops the export uses, following TensorFlow's
// definitions (broadcasting binary ops, ConcatV2, Sum with keep_dims, MatMul
// with transposes, ArgMin's first minimum). Values are kept in f64.

#[derive(Clone, Debug)]
struct Tensor {
    shape: Vec<usize>,
    values: Vec<f64>,
}

fn decode_tensor(t: &TensorProto) -> Tensor {
    let shape: Vec<usize> = t
        .tensor_shape
        .as_ref()
        .expect("tensor shape")
        .dim
        .iter()
        .map(|d| d.size as usize)
        .collect();
    let n: usize = shape.iter().product();
    let bytes = &t.tensor_content;
    let values: Vec<f64> = match DataType::try_from(t.dtype).expect("known dtype") {
        DataType::DtFloat => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        DataType::DtDouble => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        DataType::DtInt32 => bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        other => panic!("unexpected constant dtype {other:?}"),
    };
    assert_eq!(values.len(), n, "tensor_content holds the whole tensor");
    Tensor { shape, values }
}

fn broadcast(a: &Tensor, b: &Tensor, f: impl Fn(f64, f64) -> f64) -> Tensor {
    let pad = |s: &[usize]| -> [usize; 2] {
        match s {
            [] => [1, 1],
            [c] => [1, *c],
            [r, c] => [*r, *c],
            _ => panic!("rank > 2"),
        }
    };
    let (sa, sb) = (pad(&a.shape), pad(&b.shape));
    let out: [usize; 2] = std::array::from_fn(|i| {
        assert!(
            sa[i] == sb[i] || sa[i] == 1 || sb[i] == 1,
            "shapes {:?} and {:?} do not broadcast",
            a.shape,
            b.shape
        );
        sa[i].max(sb[i])
    });
    let at =
        |t: &Tensor, s: [usize; 2], i: usize, j: usize| t.values[(i % s[0]) * s[1] + (j % s[1])];
    let mut values = Vec::with_capacity(out[0] * out[1]);
    for i in 0..out[0] {
        for j in 0..out[1] {
            values.push(f(at(a, sa, i, j), at(b, sb, i, j)));
        }
    }
    Tensor {
        shape: out.to_vec(),
        values,
    }
}

struct Interpreter<'g> {
    nodes: HashMap<&'g str, &'g NodeDef>,
    feeds: HashMap<String, Tensor>,
    cache: HashMap<String, Tensor>,
}

impl<'g> Interpreter<'g> {
    fn new(graph: &'g GraphDef, feeds: HashMap<String, Tensor>) -> Self {
        Self {
            nodes: graph.node.iter().map(|n| (n.name.as_str(), n)).collect(),
            feeds,
            cache: HashMap::new(),
        }
    }

    /// Evaluates `name` (`node` or `node:0`).
    fn eval(&mut self, name: &str) -> Tensor {
        let name = name.strip_suffix(":0").unwrap_or(name);
        if let Some(t) = self.cache.get(name) {
            return t.clone();
        }
        let node = *self
            .nodes
            .get(name)
            .unwrap_or_else(|| panic!("no node {name}"));
        let inputs: Vec<Tensor> = node.input.iter().map(|i| self.eval(i)).collect();
        let unary = |f: fn(f64) -> f64| Tensor {
            shape: inputs[0].shape.clone(),
            values: inputs[0].values.iter().map(|&v| f(v)).collect(),
        };
        let out = match node.op.as_str() {
            "Placeholder" => {
                let t = self
                    .feeds
                    .get(name)
                    .unwrap_or_else(|| panic!("placeholder {name} not fed"))
                    .clone();
                let Value::Shape(shape) = attr(node, "shape") else {
                    panic!("shape attr")
                };
                assert_eq!(shape.dim.len(), t.shape.len());
                for (d, &s) in shape.dim.iter().zip(&t.shape) {
                    assert!(
                        d.size == -1 || d.size as usize == s,
                        "fed shape {:?} vs placeholder {shape:?}",
                        t.shape
                    );
                }
                t
            }
            "Const" => {
                let Value::Tensor(t) = attr(node, "value") else {
                    panic!("value attr")
                };
                assert_eq!(type_of(node, "dtype") as i32, t.dtype);
                decode_tensor(t)
            }
            "ConcatV2" => {
                let (axis, parts) = inputs.split_last().unwrap();
                assert_eq!(axis.values, [1.0]);
                assert_eq!(*attr(node, "N"), Value::I(parts.len() as i64));
                let rows = parts[0].shape[0];
                let width: usize = parts.iter().map(|p| p.shape[1]).sum();
                let mut values = Vec::with_capacity(rows * width);
                for i in 0..rows {
                    for p in parts {
                        values.extend_from_slice(&p.values[i * p.shape[1]..(i + 1) * p.shape[1]]);
                    }
                }
                Tensor {
                    shape: vec![rows, width],
                    values,
                }
            }
            "Cast" => {
                let (from, to) = (type_of(node, "SrcT"), type_of(node, "DstT"));
                assert_eq!(*attr(node, "Truncate"), Value::B(false));
                assert_ne!(from, to, "no-op casts are not written");
                match to {
                    DataType::DtFloat => unary(|v| v as f32 as f64),
                    DataType::DtDouble => unary(|v| v),
                    other => panic!("cast to {other:?}"),
                }
            }
            "Square" => unary(|v| v * v),
            "Sqrt" => unary(f64::sqrt),
            "Sum" => {
                assert_eq!(inputs[1].values, [1.0], "sums over axis 1");
                assert_eq!(*attr(node, "keep_dims"), Value::B(true));
                let (r, c) = (inputs[0].shape[0], inputs[0].shape[1]);
                let values = (0..r)
                    .map(|i| inputs[0].values[i * c..(i + 1) * c].iter().sum())
                    .collect();
                Tensor {
                    shape: vec![r, 1],
                    values,
                }
            }
            "MatMul" => {
                assert_eq!(*attr(node, "transpose_a"), Value::B(false));
                assert_eq!(*attr(node, "transpose_b"), Value::B(true));
                let (a, b) = (&inputs[0], &inputs[1]);
                let (n, d, k) = (a.shape[0], a.shape[1], b.shape[0]);
                assert_eq!(b.shape[1], d);
                let mut values = vec![0.0; n * k];
                for i in 0..n {
                    for j in 0..k {
                        values[i * k + j] = (0..d)
                            .map(|t| a.values[i * d + t] * b.values[j * d + t])
                            .sum();
                    }
                }
                Tensor {
                    shape: vec![n, k],
                    values,
                }
            }
            "Mul" => broadcast(&inputs[0], &inputs[1], |a, b| a * b),
            "Add" => broadcast(&inputs[0], &inputs[1], |a, b| a + b),
            "Sub" => broadcast(&inputs[0], &inputs[1], |a, b| a - b),
            "RealDiv" => broadcast(&inputs[0], &inputs[1], |a, b| a / b),
            "Maximum" => broadcast(&inputs[0], &inputs[1], f64::max),
            "ArgMin" => {
                assert_eq!(inputs[1].values, [1.0]);
                assert_eq!(type_of(node, "output_type"), DataType::DtInt64);
                let (r, c) = (inputs[0].shape[0], inputs[0].shape[1]);
                let values = (0..r)
                    .map(|i| {
                        let row = &inputs[0].values[i * c..(i + 1) * c];
                        // The first minimum, as TensorFlow's ArgMin.
                        (0..c).fold(0, |best, j| if row[j] < row[best] { j } else { best }) as f64
                    })
                    .collect();
                Tensor {
                    shape: vec![r],
                    values,
                }
            }
            other => panic!("the interpreter does not know op {other}"),
        };
        self.cache.insert(name.to_owned(), out.clone());
        out
    }
}

/// Brute-force distances in f64: the direct sum of squared differences, or
/// 1 - cos computed from scratch.
fn brute_force(x: &[f64], centres: &[f64], d: usize, metric: Metric) -> Vec<Vec<f64>> {
    let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
    x.chunks(d)
        .map(|row| {
            centres
                .chunks(d)
                .map(|c| match metric {
                    Metric::SquaredEuclidean => {
                        row.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum()
                    }
                    Metric::Cosine => {
                        1.0 - row.iter().zip(c).map(|(a, b)| a * b).sum::<f64>()
                            / (norm(row) * norm(c))
                    }
                })
                .collect()
        })
        .collect()
}

/// Writes an export of `centres` and runs its graph on `x` through the
/// signatures; checks both against brute force.
fn check_export_computes_brute_force<T: Float>(
    metric: Metric,
    features: &[(&str, usize)],
    as_text: bool,
) {
    let d: usize = features.iter().map(|f| f.1).sum();
    let k = 5;
    let mut rng = ChaCha8Rng::seed_from_u64(d as u64 * 31 + k as u64);
    let to_t = |v: Vec<f64>| v.into_iter().map(T::from_f64_lossy).collect::<Vec<T>>();
    let centres = to_t(random_matrix(&mut rng, k, d, 4.0));
    let mut x_rows = random_matrix(&mut rng, 40, d, 4.0);
    x_rows.extend(vec![0.0; d]); // the zero row
    let x = to_t(x_rows);
    let as_f64 = |v: &[T]| v.iter().map(|t| t.to_f64_exact()).collect::<Vec<f64>>();

    let serving_input = ServingInputReceiver {
        features: features.iter().map(|(n, w)| (n.to_string(), *w)).collect(),
        ..Default::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("export");
    write_saved_model(
        &dir,
        MatRef::new(&centres, k, d).unwrap(),
        metric,
        &serving_input,
        as_text,
    )
    .unwrap();
    let model = if as_text {
        // The text export holds the same message as the binary one.
        let bin_dir = tmp.path().join("binary");
        write_saved_model(
            &bin_dir,
            MatRef::new(&centres, k, d).unwrap(),
            metric,
            &serving_input,
            false,
        )
        .unwrap();
        let text = fs::read_to_string(dir.join(SAVED_MODEL_PBTXT)).unwrap();
        assert!(!dir.join(SAVED_MODEL_PB).exists());
        let model = read_pb(&bin_dir);
        assert_eq!(text, text::to_text(&model));
        check_text_is_well_formed(&text, &model);
        model
    } else {
        read_pb(&dir)
    };
    let meta_graph = &model.meta_graphs[0];
    let graph = meta_graph.graph_def.as_ref().unwrap();

    // Feed each signature input by its TensorInfo name, splitting the rows.
    let n = x.len() / d;
    let signature = &meta_graph.signature_def[SERVING_DEFAULT_SIGNATURE];
    let mut feeds = HashMap::new();
    let mut start = 0;
    for (name, width) in features {
        let info = &signature.inputs[*name];
        let mut values = Vec::with_capacity(n * width);
        for i in 0..n {
            values.extend(as_f64(&x[i * d + start..i * d + start + width]));
        }
        feeds.insert(
            info.name.trim_end_matches(":0").to_owned(),
            Tensor {
                shape: vec![n, *width],
                values,
            },
        );
        start += width;
    }
    let mut interpreter = Interpreter::new(graph, feeds);
    let distances = interpreter
        .eval(&meta_graph.signature_def[ALL_DISTANCES_SIGNATURE].outputs[OUTPUT_KEY].name);
    let index = interpreter.eval(&signature.outputs[OUTPUT_KEY].name);
    assert_eq!(
        interpreter
            .eval(&meta_graph.signature_def[CLUSTER_INDEX_SIGNATURE].outputs[OUTPUT_KEY].name)
            .values,
        index.values
    );

    let expected = brute_force(&as_f64(&x), &as_f64(&centres), d, metric);
    assert_eq!(distances.shape, [n, k]);
    let tol = if T::DTYPE == crate::DType::F32 {
        1e-5
    } else {
        1e-12
    } * 100.0;
    for (i, want_row) in expected.iter().enumerate() {
        for (j, want) in want_row.iter().enumerate() {
            let got = distances.values[i * k + j];
            assert!(
                (got - want).abs() <= tol,
                "row {i} centre {j}: graph {got}, brute force {want}"
            );
        }
        let best = (0..k).fold(0, |b, j| if want_row[j] < want_row[b] { j } else { b });
        assert_eq!(index.values[i], best as f64, "row {i}: {want_row:?}");
    }
    // The zero row: its squared norm is 0, under cosine its distance is 1.
    let zero_row = &distances.values[(n - 1) * k..];
    match metric {
        Metric::SquaredEuclidean => {
            for (j, c) in centres.chunks(d).enumerate() {
                let sq: f64 = as_f64(c).iter().map(|v| v * v).sum();
                assert!((zero_row[j] - sq).abs() <= tol);
            }
        }
        Metric::Cosine => assert!(zero_row.iter().all(|&v| v == 1.0), "{zero_row:?}"),
    }
    // The centres are stored exactly as given.
    assert_eq!(interpreter.eval("clusters:0").values, as_f64(&centres));
}

#[test]
fn graph_computes_brute_force_distances_and_argmin() {
    for as_text in [false, true] {
        for metric in [Metric::SquaredEuclidean, Metric::Cosine] {
            check_export_computes_brute_force::<f32>(metric, &[("x", 6)], as_text);
            check_export_computes_brute_force::<f64>(metric, &[("x", 6)], as_text);
            check_export_computes_brute_force::<f32>(
                metric,
                &[("zeta", 2), ("alpha", 3), ("mid", 1)],
                as_text,
            );
            check_export_computes_brute_force::<f64>(metric, &[("b", 1), ("a", 4)], as_text);
        }
    }
}

#[test]
fn ties_go_to_the_lowest_index_in_the_graph() {
    let centres = [0.0f64, 0.0, 2.0, 0.0, 2.0, 0.0];
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("e");
    write_saved_model(
        &dir,
        MatRef::new(&centres, 3, 2).unwrap(),
        Metric::SquaredEuclidean,
        &ServingInputReceiver::single("x", 2),
        false,
    )
    .unwrap();
    let model = read_pb(&dir);
    let graph = model.meta_graphs[0].graph_def.as_ref().unwrap();
    let feeds = HashMap::from([(
        "features/x".to_owned(),
        Tensor {
            shape: vec![2, 2],
            values: vec![1.0, 0.0, 2.0, 0.0],
        },
    )]);
    // [1,0] is 1 from centres 0, 1 and 2; [2,0] is 0 from centres 1 and 2.
    assert_eq!(
        Interpreter::new(graph, feeds).eval("cluster_index").values,
        [0.0, 1.0]
    );
}

#[test]
fn binary_export_has_the_structure_tensorflow_expects() {
    let centres = [1.5f32, -2.0, 0.25, 3.0, 4.0, -0.5];
    let serving_input = ServingInputReceiver {
        features: vec![("b".into(), 2), ("a".into(), 1)],
        ..Default::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested").join("1700000000");
    write_saved_model(
        &dir,
        MatRef::new(&centres, 2, 3).unwrap(),
        Metric::Cosine,
        &serving_input,
        false,
    )
    .unwrap();

    // Exactly saved_model.pb and an empty variables/; no staging leftovers.
    let mut entries: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    assert_eq!(entries, ["saved_model.pb", "variables"]);
    assert_eq!(fs::read_dir(dir.join("variables")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(dir.parent().unwrap()).unwrap().count(), 1);

    let model = read_pb(&dir);
    assert_eq!(model.saved_model_schema_version, 1);
    assert_eq!(model.meta_graphs.len(), 1);
    let meta_graph = &model.meta_graphs[0];
    let info = meta_graph.meta_info_def.as_ref().unwrap();
    assert_eq!(info.tags, ["serve"]);
    assert_eq!(info.tensorflow_version, "2.15.1");

    let keys: Vec<&str> = meta_graph
        .signature_def
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["all_distances", "cluster_index", "serving_default"]);
    for (key, signature) in &meta_graph.signature_def {
        assert_eq!(signature.method_name, "tensorflow/serving/predict");
        let inputs: Vec<(&str, &str, i32, Vec<i64>)> = signature
            .inputs
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    v.name.as_str(),
                    v.dtype,
                    v.tensor_shape
                        .as_ref()
                        .unwrap()
                        .dim
                        .iter()
                        .map(|d| d.size)
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            inputs,
            [
                ("a", "features/a:0", DataType::DtFloat as i32, vec![-1, 1]),
                ("b", "features/b:0", DataType::DtFloat as i32, vec![-1, 2])
            ]
        );
        assert_eq!(signature.outputs.len(), 1);
        let output = &signature.outputs["output"];
        let dims: Vec<i64> = output
            .tensor_shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| d.size)
            .collect();
        if key == "all_distances" {
            assert_eq!(
                (output.name.as_str(), output.dtype, dims),
                ("all_distances:0", DataType::DtFloat as i32, vec![-1, 2])
            );
        } else {
            assert_eq!(
                (output.name.as_str(), output.dtype, dims),
                ("cluster_index:0", DataType::DtInt64 as i32, vec![-1])
            );
        }
    }

    let graph = meta_graph.graph_def.as_ref().unwrap();
    assert_eq!(
        graph.versions.as_ref().unwrap().producer,
        graph::GRAPH_DEF_PRODUCER
    );
    let by_name: BTreeMap<&str, &NodeDef> =
        graph.node.iter().map(|n| (n.name.as_str(), n)).collect();
    assert_eq!(by_name.len(), graph.node.len(), "node names are unique");
    for node in &graph.node {
        // Every input names an earlier node, so the graph is acyclic.
        let own = graph.node.iter().position(|n| n.name == node.name).unwrap();
        for input in &node.input {
            let position = graph.node.iter().position(|n| n.name == *input);
            assert!(
                position.is_some_and(|p| p < own),
                "{input}, input of {}, is not an earlier node",
                node.name
            );
        }
        // Every attr the op's OpDef declares without a default is present.
        let required: &[&str] = match node.op.as_str() {
            "Const" => &["dtype", "value"],
            "Placeholder" => &["dtype", "shape"],
            "ConcatV2" => &["N", "T", "Tidx"],
            "MatMul" => &["T", "transpose_a", "transpose_b"],
            "Sum" => &["T", "Tidx", "keep_dims"],
            "ArgMin" => &["T", "Tidx", "output_type"],
            "Cast" => &["SrcT", "DstT", "Truncate"],
            "Square" | "Sqrt" | "Mul" | "Add" | "Sub" | "RealDiv" | "Maximum" => &["T"],
            other => panic!("unexpected op {other}"),
        };
        for key in required {
            attr(node, key);
        }
        // The model computes in float32 but for the rows' norms, which
        // predict takes in float64.
        let norm_path = [
            "distances/x_squared",
            "distances/x_sq_norm",
            "distances/x_norm",
            "distances/x_norm_floored",
            "distances/inv_norm_f64",
        ];
        if !matches!(
            node.op.as_str(),
            "Const" | "Placeholder" | "ConcatV2" | "Cast"
        ) {
            let want = if norm_path.contains(&node.name.as_str()) {
                DataType::DtDouble
            } else {
                DataType::DtFloat
            };
            assert_eq!(type_of(node, "T"), want, "{}", node.name);
        }
    }
    assert_eq!(
        by_name
            .values()
            .filter(|n| n.op == "Placeholder")
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>(),
        ["features/a", "features/b"]
    );
    // The concat joins the features in the given order, not sorted order.
    assert_eq!(
        by_name["features/concat"].input,
        ["features/b", "features/a", "features/concat/axis"]
    );
    let Value::Tensor(clusters) = attr(by_name["clusters"], "value") else {
        panic!()
    };
    assert_eq!(
        clusters.tensor_content,
        bytemuck::cast_slice::<f32, u8>(&centres)
    );
    let Value::Tensor(normalized) = attr(by_name["clusters_normalized"], "value") else {
        panic!()
    };
    let norm0 = (1.5f64 * 1.5 + 4.0 + 0.0625).sqrt();
    let first = f32::from_le_bytes(normalized.tensor_content[..4].try_into().unwrap());
    assert_eq!(first, (1.5 / norm0) as f32);
}

#[test]
fn exports_are_byte_identical_across_runs() {
    let centres = [0.1f64, 0.2, 0.3, 0.4];
    let tmp = tempfile::tempdir().unwrap();
    for as_text in [false, true] {
        let mut files = Vec::new();
        for run in 0..2 {
            let dir = tmp.path().join(format!("{as_text}-{run}"));
            write_saved_model(
                &dir,
                MatRef::new(&centres, 2, 2).unwrap(),
                Metric::SquaredEuclidean,
                &ServingInputReceiver::single("x", 2),
                as_text,
            )
            .unwrap();
            let name = if as_text {
                SAVED_MODEL_PBTXT
            } else {
                SAVED_MODEL_PB
            };
            files.push(fs::read(dir.join(name)).unwrap());
        }
        assert_eq!(files[0], files[1]);
    }
}

/// Checks the text format by reading it back: balanced braces, one
/// `name: value` or `name {` per line, every string a valid escaped literal,
/// and the centres' tensor_content unescaping to the binary bytes.
fn check_text_is_well_formed(text: &str, model: &SavedModel) {
    let mut depth = 0usize;
    let mut contents = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed == "}" {
            depth = depth.checked_sub(1).expect("balanced braces");
        }
        let indent = line.len() - trimmed.len();
        assert_eq!(indent, 2 * depth, "line {}: indentation", number + 1);
        if trimmed == "}" {
            continue;
        }
        if let Some(name) = trimmed.strip_suffix(" {") {
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "line {}: {line}",
                number + 1
            );
            depth += 1;
            continue;
        }
        let (name, value) = trimmed
            .split_once(": ")
            .unwrap_or_else(|| panic!("line {}: {line}", number + 1));
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if let Some(quoted) = value.strip_prefix('"') {
            let bytes = unescape(quoted.strip_suffix('"').expect("closing quote"));
            if name == "tensor_content" {
                contents.push(bytes);
            }
        } else {
            assert!(
                value.parse::<i64>().is_ok()
                    || value == "true"
                    || value == "false"
                    || value.starts_with("DT_"),
                "{line}"
            );
        }
    }
    assert_eq!(depth, 0);
    let graph = model.meta_graphs[0].graph_def.as_ref().unwrap();
    let binary: Vec<Vec<u8>> = graph
        .node
        .iter()
        .filter_map(|n| match n.attr.get("value") {
            Some(AttrValue {
                value: Some(Value::Tensor(t)),
            }) => Some(t.tensor_content.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(contents, binary);
}

/// Text format's C-style escapes (the subset `text::quote` writes).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            assert!(b[i] != b'"', "unescaped quote");
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = b[i + 1];
        i += 2;
        out.push(match c {
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'"' | b'\'' | b'\\' => c,
            b'0'..=b'7' => {
                let digits = std::str::from_utf8(&b[i - 1..i + 2]).unwrap();
                i += 1 + 1;
                u8::from_str_radix(digits, 8).expect("octal escape")
            }
            other => panic!("unknown escape \\{}", other as char),
        });
    }
    out
}

#[test]
fn bad_arguments_are_errors_that_say_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let centres = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let view = MatRef::new(&centres, 2, 3).unwrap();
    let fresh = |name: &str| tmp.path().join(name);
    let message = |r: Result<()>| r.unwrap_err().to_string();

    let m = message(write_saved_model(
        &fresh("a"),
        view,
        Metric::SquaredEuclidean,
        &ServingInputReceiver::single("x", 4),
        false,
    ));
    assert!(m.contains("sum to 4") && m.contains("3 columns"), "{m}");
    let two = ServingInputReceiver {
        features: vec![("x".into(), 1), ("x".into(), 2)],
        ..Default::default()
    };
    let m = message(write_saved_model(
        &fresh("b"),
        view,
        Metric::SquaredEuclidean,
        &two,
        false,
    ));
    assert!(m.contains("\"x\" is used twice"), "{m}");
    let zero = ServingInputReceiver {
        features: vec![("x".into(), 0), ("y".into(), 3)],
        ..Default::default()
    };
    assert!(message(write_saved_model(
        &fresh("c"),
        view,
        Metric::Cosine,
        &zero,
        false
    ))
    .contains("width 0"));
    let none = ServingInputReceiver {
        features: vec![],
        ..Default::default()
    };
    assert!(message(write_saved_model(
        &fresh("d"),
        view,
        Metric::Cosine,
        &none,
        false
    ))
    .contains("no features"));
    let unnamed = ServingInputReceiver::single("", 3);
    assert!(message(write_saved_model(
        &fresh("e"),
        view,
        Metric::Cosine,
        &unnamed,
        false
    ))
    .contains("empty name"));
    let nan = [1.0f32, 2.0, 3.0, 4.0, f32::NAN, 6.0];
    let m = message(write_saved_model(
        &fresh("f"),
        MatRef::new(&nan, 2, 3).unwrap(),
        Metric::Cosine,
        &ServingInputReceiver::single("x", 3),
        false,
    ));
    assert!(m.contains("centre 1") && m.contains("column 1"), "{m}");
    let empty: [f32; 0] = [];
    let m = message(write_saved_model(
        &fresh("g"),
        MatRef::new(&empty, 0, 3).unwrap(),
        Metric::Cosine,
        &ServingInputReceiver::single("x", 3),
        false,
    ));
    assert!(m.contains("0 centres"), "{m}");
    // None of the failures left anything behind.
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);

    // An existing directory is never overwritten.
    let existing = fresh("exists");
    fs::create_dir(&existing).unwrap();
    fs::write(existing.join("keep"), b"mine").unwrap();
    let m = message(write_saved_model(
        &existing,
        view,
        Metric::Cosine,
        &ServingInputReceiver::single("x", 3),
        false,
    ));
    assert!(m.contains("already exists"), "{m}");
    assert_eq!(fs::read(existing.join("keep")).unwrap(), b"mine");

    // A parent that is a file: an I/O error naming the path, nothing left.
    let file = fresh("plain-file");
    fs::write(&file, b"x").unwrap();
    let m = message(write_saved_model(
        &file.join("export"),
        view,
        Metric::Cosine,
        &ServingInputReceiver::single("x", 3),
        false,
    ));
    assert!(m.contains("plain-file"), "{m}");
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 2);
}

#[test]
fn feature_names_tensorflow_forbids_in_node_names_are_sanitised() {
    let serving_input = ServingInputReceiver {
        features: vec![
            ("my feature/1".into(), 1),
            ("my_feature_1".into(), 1),
            ("é".into(), 1),
        ],
        ..Default::default()
    };
    let names: Vec<String> = placeholder_names(&serving_input)
        .into_iter()
        .map(|p| p.node_name)
        .collect();
    assert_eq!(
        names,
        [
            "features/my_feature_1",
            "features/my_feature_1_1",
            "features/_"
        ]
    );
    let centres = [1.0f64, 2.0, 3.0];
    let model = saved_model(
        MatRef::new(&centres, 1, 3).unwrap(),
        Metric::SquaredEuclidean,
        &serving_input,
    )
    .unwrap();
    let inputs = &model.meta_graphs[0].signature_def["serving_default"].inputs;
    assert_eq!(inputs["my feature/1"].name, "features/my_feature_1:0");
    assert_eq!(inputs["é"].name, "features/_:0");
}

#[test]
fn squared_distances_are_clamped_at_zero() {
    // A row equal to a centre: the graph's ||x||^2 (computed here in f64)
    // and the stored ||c||^2 (summed in f32, as predict does) differ by
    // rounding, so ||x||^2 - 2x.c + ||c||^2 comes out slightly negative for
    // some centres; pick one where it does and check the clamp.
    let centre = (1..200)
        .map(|i| [0.1f32 * i as f32, 0.37f32 / i as f32, 1.3f32])
        .find(|c| {
            let exact: f64 = c.iter().map(|&v| v as f64 * v as f64).sum();
            let rounded = c.iter().fold(0f32, |acc, &v| acc + v * v) as f64;
            rounded < exact
        })
        .expect("some centre rounds its squared norm down");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("e");
    let single = ServingInputReceiver::single("x", 3);
    write_saved_model(
        &dir,
        MatRef::new(&centre, 1, 3).unwrap(),
        Metric::SquaredEuclidean,
        &single,
        false,
    )
    .unwrap();
    let model = read_pb(&dir);
    let graph = model.meta_graphs[0].graph_def.as_ref().unwrap();
    let row = centre.iter().map(|&v| v as f64).collect();
    let feeds = HashMap::from([(
        "features/x".to_owned(),
        Tensor {
            shape: vec![1, 3],
            values: row,
        },
    )]);
    let mut interpreter = Interpreter::new(graph, feeds);
    assert!(interpreter.eval("distances/unclamped").values[0] < 0.0);
    assert_eq!(interpreter.eval("all_distances").values, [0.0]);
}

#[test]
fn assets_extra_are_copied_and_bad_ones_rejected_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("vocab.txt");
    fs::write(&source, b"alpha\nbeta\n").unwrap();
    let centres = [1.0f32, 2.0];
    let view = MatRef::new(&centres, 1, 2).unwrap();
    let single = ServingInputReceiver::single("x", 2);
    let base = tmp.path().join("exports");

    let assets = vec![
        ("vocab.txt".to_owned(), source.clone()),
        ("nested/dir/copy.txt".to_owned(), source.clone()),
    ];
    let dir = base.join("1");
    write_saved_model_with_assets(&dir, view, Metric::Cosine, &single, &assets, true).unwrap();
    assert_eq!(
        fs::read(dir.join("assets.extra/vocab.txt")).unwrap(),
        b"alpha\nbeta\n"
    );
    assert_eq!(
        fs::read(dir.join("assets.extra/nested/dir/copy.txt")).unwrap(),
        b"alpha\nbeta\n"
    );
    assert!(dir.join(SAVED_MODEL_PBTXT).is_file());

    let bad: [(&str, PathBuf, &str); 5] = [
        ("../escape.txt", source.clone(), "relative path inside"),
        ("/etc/x", source.clone(), "relative path inside"),
        ("", source.clone(), "relative path inside"),
        ("ok.txt", tmp.path().join("missing.txt"), "missing.txt"),
        ("ok.txt", tmp.path().to_path_buf(), "is not a file"),
    ];
    for (i, (destination, source, expected)) in bad.into_iter().enumerate() {
        let dir = base.join(format!("bad{i}"));
        let assets = vec![(destination.to_owned(), source)];
        let err =
            write_saved_model_with_assets(&dir, view, Metric::Cosine, &single, &assets, false)
                .unwrap_err()
                .to_string();
        assert!(err.contains(expected), "{destination:?}: {err}");
        assert!(!dir.exists());
    }
    let twice = vec![("a".to_owned(), source.clone()), ("a".to_owned(), source)];
    let err = write_saved_model_with_assets(
        &base.join("t"),
        view,
        Metric::Cosine,
        &single,
        &twice,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("given twice"), "{err}");
    // Only the one good export, no staging leftovers.
    assert_eq!(fs::read_dir(&base).unwrap().count(), 1);
}

#[test]
fn timestamped_exports_are_named_by_epoch_seconds_and_never_collide() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("export_base");
    let centres = [1.0f64, 2.0, 3.0, 4.0];
    let view = MatRef::new(&centres, 2, 2).unwrap();
    let single = ServingInputReceiver::single("x", 2);
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let before = now();
    let first =
        export_timestamped(&base, view, Metric::SquaredEuclidean, &single, &[], false).unwrap();
    // A second export in the same second waits for the next free name.
    let second =
        export_timestamped(&base, view, Metric::SquaredEuclidean, &single, &[], false).unwrap();
    let after = now();
    let seconds = |p: &Path| -> u64 { p.file_name().unwrap().to_str().unwrap().parse().unwrap() };
    assert_eq!(first.parent(), Some(base.as_path()));
    assert!(
        before <= seconds(&first)
            && seconds(&first) < seconds(&second)
            && seconds(&second) <= after
    );
    assert!(first.join(SAVED_MODEL_PB).is_file() && second.join(SAVED_MODEL_PB).is_file());
}
