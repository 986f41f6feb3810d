"""Agreement with TensorFlow's own K-means Estimator, where TensorFlow 2.15
(with tensorflow-estimator) is installed; skipped elsewhere."""

import os

import numpy as np
import pytest

from centroid import KMeansClustering

try:  # TensorFlow is never a dependency of centroid.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    TFKMeans = tf.compat.v1.estimator.experimental.KMeans
except Exception as e:  # ImportError, or an estimator-less TensorFlow
    tf = None
    REASON = f"TensorFlow with tf.compat.v1.estimator is not installed ({type(e).__name__}: {e})"
else:
    REASON = ""

pytestmark = pytest.mark.skipif(tf is None, reason=REASON or "TensorFlow is not installed")


def test_full_batch_five_steps_agree_with_tensorflow(tmp_path, blobs):
    # Non-integer coordinates, so that sums are not exact in float32.
    x = (blobs.points + blobs.rng.uniform(-0.5, 0.5, blobs.points.shape)).astype(np.float32)
    # Explicit initial centres, one point from each true cluster, so no
    # cluster empties (TensorFlow would move an empty one to the origin).
    init = np.stack([x[np.flatnonzero(blobs.assignments == j)[0]] for j in range(5)])

    ref = TFKMeans(
        num_clusters=5,
        model_dir=str(tmp_path / "tf"),
        initial_clusters=init,
        use_mini_batch=False,
    )
    ref.train(lambda: tf.constant(x), steps=5)
    tf_centres = ref.cluster_centers()

    ours = KMeansClustering(5, model_dir=str(tmp_path / "ours"), initial_clusters=init, use_mini_batch=False)
    ours.train(lambda: x, steps=5)
    centres = ours.cluster_centers()

    rel = np.max(np.abs(centres - tf_centres) / np.maximum(np.abs(tf_centres), 1e-12))
    print(f"max relative difference of the centres after 5 full-batch steps: {rel:.3g}")
    assert rel <= 1e-4
    tf_score = ref.score(lambda: tf.constant(x))
    assert ours.score(lambda: x) == pytest.approx(tf_score, rel=1e-4)
    # A constant tensor never ends in TensorFlow's predict: give it one epoch.
    one_epoch = lambda: tf.compat.v1.train.limit_epochs(tf.constant(x), num_epochs=1)  # noqa: E731
    tf_index = [int(i) for i in ref.predict_cluster_index(one_epoch)]
    assert [int(i) for i in ours.predict_cluster_index(lambda: x)] == tf_index


def test_tensorflow_tensors_and_datasets_are_accepted_as_input(tmp_path, blobs):
    x = blobs.points
    init = x[:5].copy()
    est = KMeansClustering(None, model_dir=str(tmp_path / "a"), initial_clusters=init, use_mini_batch=False)
    est.train(lambda: tf.constant(x), steps=2)
    est2 = KMeansClustering(None, model_dir=str(tmp_path / "b"), initial_clusters=init, use_mini_batch=False)
    est2.train(lambda: tf.data.Dataset.from_tensors(tf.constant(x)).repeat(2))
    np.testing.assert_array_equal(est.cluster_centers(), est2.cluster_centers())


@pytest.mark.parametrize("metric", ["squared_euclidean", "cosine"])
def test_exported_saved_model_serves_what_predict_gives(tmp_path, blobs, metric):
    x = blobs.points
    est = KMeansClustering(5, model_dir=str(tmp_path / "m"), distance_metric=metric, random_seed=1)
    est.train(lambda: x, steps=3)
    # Dict serving input: joined in sorted key order, as in training.
    path = est.export_savedmodel(str(tmp_path / "export"), serving_input_receiver_fn={"b": 1, "a": 1})
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures.keys()) == {"serving_default", "cluster_index", "all_distances"}
    feeds = {"a": tf.constant(x[:, :1]), "b": tf.constant(x[:, 1:])}
    served_index = loaded.signatures["serving_default"](**feeds)["output"].numpy()
    served_distances = loaded.signatures["all_distances"](**feeds)["output"].numpy()
    preds = list(est.predict(lambda: {"a": x[:, 0], "b": x[:, 1]}))
    np.testing.assert_array_equal(served_index, [p["cluster_index"] for p in preds])
    ours = np.stack([p["all_distances"] for p in preds])
    # Both compute ||x||^2 - 2 x.c + ||c||^2 in float32, summing in different
    # orders: they agree to a few float32 roundings of the terms' size.
    centres = est.cluster_centers().astype(np.float64)
    if metric == "cosine":
        scale = np.full(ours.shape, 2.0)
    else:
        scale = (x.astype(np.float64) ** 2).sum(1)[:, None] + (centres**2).sum(1)[None, :]
    assert np.all(np.abs(served_distances - ours) <= 8 * np.finfo(np.float32).eps * scale)


# ------------------------------------------------- drop-in: side by side
# Each scenario runs on TensorFlow's Estimator and on ours with the same
# data and centres; the assertions compare the two.

import inspect  # noqa: E402
import logging  # noqa: E402

import centroid  # noqa: E402
from centroid import RunConfig  # noqa: E402
from centroid.inputs import numpy_input_fn, pandas_input_fn  # noqa: E402

X = np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32)
INIT = X[:3].copy()


def _both(tmp_path, **kw):
    ref = TFKMeans(num_clusters=3, model_dir=str(tmp_path / "tf"), initial_clusters=INIT, use_mini_batch=False, **kw)
    ours = KMeansClustering(3, model_dir=str(tmp_path / "ours"), initial_clusters=INIT, use_mini_batch=False, **kw)
    return ref, ours


def _raises_same(tf_call, our_call, expected):
    with pytest.raises(expected):
        tf_call()
    with pytest.raises(expected):
        our_call()


def test_untrained_model_raises_value_error_on_both(tmp_path):
    ref, ours = _both(tmp_path)
    for method in ("cluster_centers", "get_variable_names"):
        _raises_same(getattr(ref, method), getattr(ours, method), ValueError)
    _raises_same(lambda: ref.get_variable_value("clusters"), lambda: ours.get_variable_value("clusters"), ValueError)
    _raises_same(
        lambda: ref.export_saved_model(str(tmp_path / "e1"), lambda: None),
        lambda: ours.export_saved_model(str(tmp_path / "e2"), {"x": 2}),
        ValueError,
    )
    # TensorFlow initialises a fresh model to evaluate or predict with and
    # then fails inside its graph on the empty centres; centroid says "train
    # first" with a ValueError.
    for tf_call, our_call in (
        (lambda: ref.evaluate(lambda: tf.constant(X), steps=1), lambda: ours.evaluate(lambda: X, steps=1)),
        (lambda: list(ref.predict(lambda: tf.constant(X))), lambda: list(ours.predict(lambda: X))),
    ):
        with pytest.raises(tf.errors.InvalidArgumentError):
            tf_call()
        with pytest.raises(ValueError, match="no checkpoint"):
            our_call()


def test_missing_checkpoint_path_and_missing_receiver_raise_value_error_on_both(tmp_path):
    ref, ours = _both(tmp_path)
    ref.train(lambda: tf.constant(X), steps=1)
    ours.train(lambda: X, steps=1)
    _raises_same(
        lambda: ref.evaluate(lambda: tf.constant(X), steps=1, checkpoint_path=str(tmp_path / "tf" / "model.ckpt-99")),
        lambda: ours.evaluate(lambda: X, steps=1, checkpoint_path=str(tmp_path / "ours" / "model.ckpt-99")),
        ValueError,
    )
    _raises_same(
        lambda: ref.export_saved_model(str(tmp_path / "e1"), None),
        lambda: ours.export_saved_model(str(tmp_path / "e2"), None),
        ValueError,
    )


def test_type_errors_where_tensorflow_raises_type_error(tmp_path):
    ref, ours = _both(tmp_path)
    _raises_same(lambda: ref.train(X, steps=1), lambda: ours.train(X, steps=1), TypeError)
    # TensorFlow finds a fractional k when it builds the graph; we at once.
    _raises_same(
        lambda: TFKMeans(num_clusters=2.5, model_dir=str(tmp_path / "k")).train(lambda: tf.constant(X), steps=1),
        lambda: KMeansClustering(2.5, model_dir=str(tmp_path / "k2")),
        TypeError,
    )


def test_model_fn_has_tensorflows_signature(tmp_path):
    ref, ours = _both(tmp_path)
    assert list(inspect.signature(ours.model_fn).parameters) == list(inspect.signature(ref.model_fn).parameters)
    ref.train(lambda: tf.constant(X), steps=2)
    ours.train(lambda: X, steps=2)
    # The EstimatorSpec's loss on TensorFlow (built in a graph) and ours.
    with tf.Graph().as_default():
        tf.compat.v1.train.create_global_step()
        spec = ref.model_fn(tf.constant(X), None, tf.estimator.ModeKeys.EVAL, ref.config)
        with tf.compat.v1.Session() as sess:
            tf.compat.v1.train.Saver().restore(sess, ref.latest_checkpoint())
            tf_loss = sess.run(spec.loss)
    mine = ours.model_fn(X, None, centroid.ModeKeys.EVAL, ours.config)
    assert set(mine.export_outputs) == set(spec.export_outputs)
    assert mine.loss == pytest.approx(float(tf_loss), rel=1e-4)
    assert mine.eval_metric_ops["score"][0] == pytest.approx(float(tf_loss), rel=1e-4)


def _tf_batches(fn):
    """Every batch a TensorFlow (queue-based) input function yields."""
    out = []
    with tf.Graph().as_default():
        features = fn()
        with tf.compat.v1.train.MonitoredSession() as sess:
            while not sess.should_stop():
                out.append(sess.run(features))
    return out


def test_numpy_input_fn_yields_tensorflows_batches(tmp_path):
    tf_fn = tf.compat.v1.estimator.inputs.numpy_input_fn
    data = {"a": X[:, :1], "b": X[:, 1:]}
    theirs = _tf_batches(tf_fn(data, batch_size=30, num_epochs=2, shuffle=False))
    ours = list(numpy_input_fn(data, batch_size=30, num_epochs=2, shuffle=False)())
    # 200 rows in batches of 30: batches run across the epoch boundary.
    assert len(ours) == len(theirs) == 7
    for a, b in zip(ours, theirs):
        for k in ("a", "b"):
            np.testing.assert_array_equal(a[k], b[k])
    # Shuffled: the same batch sizes, and each epoch a permutation of x.
    theirs = _tf_batches(tf_fn(X, batch_size=30, num_epochs=1, shuffle=True))
    ours = list(numpy_input_fn(X, batch_size=30, num_epochs=1, shuffle=True)())
    assert [len(b) for b in ours] == [len(b) for b in theirs] == [30, 30, 30, 10]
    for batches in (ours, theirs):
        joined = np.concatenate(batches)
        assert sorted(map(tuple, joined)) == sorted(map(tuple, X))
    # shuffle is required on both; the queue arguments are accepted.
    _raises_same(lambda: tf_fn(X), lambda: numpy_input_fn(X), ValueError)
    numpy_input_fn(X, None, 10, 1, False, 500, 1)


def test_pandas_input_fn_yields_tensorflows_batches():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1]})
    theirs = _tf_batches(tf.compat.v1.estimator.inputs.pandas_input_fn(frame, batch_size=40, shuffle=False))
    ours = list(pandas_input_fn(frame, batch_size=40, shuffle=False)())
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs):
        for k in ("a", "b"):
            np.testing.assert_array_equal(a[k], b[k])


def test_tensorflow_run_config_is_read_by_field_name(tmp_path):
    def config(d):
        return tf.estimator.RunConfig(
            model_dir=str(d),
            tf_random_seed=7,
            save_checkpoints_steps=2,
            keep_checkpoint_max=2,
            log_step_count_steps=3,
            save_summary_steps=4,
            session_config=tf.compat.v1.ConfigProto(intra_op_parallelism_threads=2),
        )

    ref = TFKMeans(num_clusters=3, initial_clusters=INIT, use_mini_batch=False, config=config(tmp_path / "tf"))
    ours = KMeansClustering(3, initial_clusters=INIT, use_mini_batch=False, config=config(tmp_path / "ours"))
    assert ours.model_dir == str(tmp_path / "ours")
    c = ours.config
    assert (c.random_seed, c.save_checkpoints_steps, c.save_checkpoints_secs) == (7, 2, None)
    assert (c.keep_checkpoint_max, c.log_step_count_steps, c.save_summary_steps, c.num_threads) == (2, 3, 4, 2)
    ref.train(lambda: tf.constant(X), steps=7)
    ours.train(lambda: X, steps=7)

    def kept(d):
        names = [n for n in os.listdir(d) if n.startswith("model.ckpt-") and not n.endswith((".meta", ".data-00000-of-00001"))]
        return sorted(int(n.split("-")[1].split(".")[0]) for n in names)

    assert kept(tmp_path / "ours") == kept(tmp_path / "tf") == [6, 7]
    with pytest.raises(ValueError, match="keep_checkpoint_every_n_hours"):
        KMeansClustering(3, config=tf.estimator.RunConfig(keep_checkpoint_every_n_hours=1))


class _Recorder(tf.estimator.SessionRunHook if tf is not None else object):
    """A TensorFlow hook written for TensorFlow: the global step comes from
    the graph in begin(), values from the session and from fetches."""

    def __init__(self):
        self.calls = []

    def begin(self):
        self.global_step = tf.compat.v1.train.get_global_step()
        self.calls.append(("begin", self.global_step is not None))

    def after_create_session(self, session, coord):
        self.calls.append(("after_create_session", int(session.run(self.global_step))))

    def before_run(self, run_context):
        self.calls.append(("before_run",))
        return tf.estimator.SessionRunArgs({"step": self.global_step})

    def after_run(self, run_context, run_values):
        now = int(run_context.session.run(self.global_step))
        self.calls.append(("after_run", int(run_values.results["step"]), now))
        if now >= 3:
            run_context.request_stop()

    def end(self, session):
        self.calls.append(("end", int(session.run(self.global_step))))


def test_tensorflow_hooks_run_in_tensorflows_order_with_their_fetches(tmp_path):
    ref, ours = _both(tmp_path)
    theirs, mine = _Recorder(), _Recorder()
    ref.train(lambda: tf.constant(X), steps=10, hooks=[theirs])
    ours.train(lambda: X, steps=10, hooks=[mine])
    # Worked out by hand: the step fetched in a run is the global step before
    # that run's increment; the step read after it, the one after.
    expected = [("begin", True), ("after_create_session", 0)]
    for step in range(3):
        expected += [("before_run",), ("after_run", step, step + 1)]
    expected.append(("end", 3))
    assert mine.calls == expected
    assert _same_up_to_tensorflows_step_race(theirs.calls, expected)


def _same_up_to_tensorflows_step_race(theirs, expected):
    """TensorFlow's K-means model_fn makes `assign_add(global_step, 1)` a
    dependency of its train op, but a fetch of `global_step` in the same
    `session.run` is unordered with that assignment: TensorFlow reports the
    value from before the increment (usually) or after it (now and then, by
    thread timing). centroid always reports the value from before. So where
    `expected` has a fetched step s, TensorFlow may have s or s + 1; every
    other field must match exactly."""
    if len(theirs) != len(expected):
        return False
    for got, want in zip(theirs, expected):
        if got == want:
            continue
        if got[0] != "after_run" or want[0] != "after_run":
            return False
        if got[2] != want[2] or got[1] != want[1] + 1:
            return False
    return True


def test_tensorflows_built_in_hooks(tmp_path):
    ref, ours = _both(tmp_path)

    class Listener(tf.estimator.CheckpointSaverListener):
        def __init__(self):
            self.calls = []

        def begin(self):
            self.calls.append("begin")

        def after_save(self, session, global_step_value):
            self.calls.append(int(global_step_value))

        def end(self, session, global_step_value):
            self.calls.append(("end", int(global_step_value)))

    def hooks(model_dir, listener):
        return [
            tf.estimator.StopAtStepHook(num_steps=5),
            tf.estimator.CheckpointSaverHook(str(model_dir), save_steps=2, listeners=[listener]),
            tf.estimator.StepCounterHook(every_n_steps=2, output_dir=str(model_dir / "steps")),
            tf.estimator.SummarySaverHook(
                save_steps=2, output_dir=str(model_dir / "summaries"), scaffold=tf.compat.v1.train.Scaffold()
            ),
        ]

    theirs, mine = Listener(), Listener()
    ref.train(lambda: tf.constant(X), steps=50, hooks=hooks(tmp_path / "tf", theirs))
    ours.train(lambda: X, steps=50, hooks=hooks(tmp_path / "ours", mine))
    assert int(ours.get_variable_value("global_step")) == int(ref.get_variable_value("global_step")) == 5
    # TensorFlow also saves when its session starts (step 0); see README.
    assert theirs.calls[:2] == ["begin", 0]
    assert mine.calls == [theirs.calls[0]] + theirs.calls[2:] == ["begin", 2, 4, 5, ("end", 5)]
    steps_tf, steps_ours = _scalars(tmp_path / "tf" / "steps"), _scalars(tmp_path / "ours" / "steps")
    assert [s for s, _ in steps_ours["global_step/sec"]] == [s for s, _ in steps_tf["global_step/sec"]] == [3, 5]
    # TensorFlow's SummarySaverHook writes what its scaffold's summary op
    # gives, and a Scaffold nobody finalises gives none; ours records the
    # training loss on the hook's schedule (see README): after the first
    # step, then every 2, the losses TensorFlow logs for those steps.
    assert "loss" not in _scalars(tmp_path / "tf" / "summaries")
    loss_ours = _scalars(tmp_path / "ours" / "summaries")["loss"]
    assert [s for s, _ in loss_ours] == [1, 3, 5]
    reference = _scalars(tmp_path / "tf")  # TensorFlow's own loss summary: steps 1 and 5 (every 100, and the last)
    assert [s for s, _ in reference["loss"]][:1] == [1]
    assert loss_ours[0][1] == pytest.approx(reference["loss"][0][1], rel=1e-4)


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_event_files_match_tensorflows(tmp_path):
    pytest.importorskip("tensorboard")
    cfg = dict(save_summary_steps=2, log_step_count_steps=2)
    ref = TFKMeans(
        num_clusters=3,
        initial_clusters=INIT,
        use_mini_batch=False,
        config=tf.estimator.RunConfig(model_dir=str(tmp_path / "tf"), **cfg),
    )
    ours = KMeansClustering(
        3, initial_clusters=INIT, use_mini_batch=False, config=RunConfig(model_dir=str(tmp_path / "ours"), **cfg)
    )
    ref.train(lambda: tf.constant(X), steps=5)
    ours.train(lambda: X, steps=5)
    theirs, mine = _scalars(tmp_path / "tf"), _scalars(tmp_path / "ours")
    assert [s for s, _ in mine["loss"]] == [s for s, _ in theirs["loss"]] == [1, 3, 5]
    np.testing.assert_allclose([v for _, v in mine["loss"]], [v for _, v in theirs["loss"]], rtol=1e-4)
    assert [s for s, _ in mine["global_step/sec"]] == [s for s, _ in theirs["global_step/sec"]]
    r1 = ref.evaluate(lambda: tf.constant(X), steps=1, name="holdout")
    r2 = ours.evaluate(lambda: X, steps=1, name="holdout")
    theirs, mine = _scalars(tmp_path / "tf" / "eval_holdout"), _scalars(tmp_path / "ours" / "eval_holdout")
    for tag in ("loss", "score"):
        assert [s for s, _ in mine[tag]] == [s for s, _ in theirs[tag]] == [5]
        assert mine[tag][0][1] == pytest.approx(theirs[tag][0][1], rel=1e-4)
    assert r2["score"] == pytest.approx(r1["score"], rel=1e-4)


def test_training_logs_match_tensorflows(tmp_path, caplog):
    cfg = dict(log_step_count_steps=2)
    ref = TFKMeans(3, initial_clusters=INIT, use_mini_batch=False, config=tf.estimator.RunConfig(model_dir=str(tmp_path / "tf"), **cfg))
    ours = KMeansClustering(3, initial_clusters=INIT, use_mini_batch=False, config=RunConfig(model_dir=str(tmp_path / "ours"), **cfg))
    tf_logger = tf.get_logger()  # propagates to the root logger, where caplog listens
    old_level = tf_logger.level
    tf_logger.setLevel(logging.INFO)
    try:
        with caplog.at_level(logging.INFO):
            ref.train(lambda: tf.constant(X), steps=5)
            theirs = [r.getMessage() for r in caplog.records if r.name == "tensorflow"]
            caplog.clear()
            ours.train(lambda: X, steps=5)
            mine = [r.getMessage() for r in caplog.records if r.name.startswith("centroid")]
    finally:
        tf_logger.setLevel(old_level)

    def shape(lines):
        out = []
        for line in lines:
            if line.startswith("loss = "):
                out.append(("loss", float(line.split(",")[0].split("=")[1]), line.split("step = ")[1].split(" ")[0]))
            elif line.startswith("global_step/sec: "):
                out.append(("global_step/sec",))
            elif line.startswith("Loss for final step: "):
                out.append(("final", float(line.split(": ")[1].rstrip("."))))
        return out

    a, b = shape(mine), shape(theirs)
    assert [x[0] for x in a] == [x[0] for x in b]
    # Logged every 2nd run, with the global step fetched in that run: 0, 2, 4
    # before the increment. TensorFlow's fetch races with its own increment
    # (see _same_up_to_tensorflows_step_race), so it may log s + 1 instead.
    assert [x[2] for x in a if x[0] == "loss"] == ["0", "2", "4"]
    for got, want in zip([x[2] for x in b if x[0] == "loss"], ["0", "2", "4"]):
        assert int(got) in (int(want), int(want) + 1)
    for x, y in zip(a, b):
        if len(x) > 1:
            assert x[1] == pytest.approx(y[1], rel=1e-4)


def test_serving_receivers_written_for_tensorflow(tmp_path):
    ref, ours = _both(tmp_path)
    ref.train(lambda: tf.constant(X), steps=3)
    ours.train(lambda: X, steps=3)

    def receiver():  # builds placeholders: needs a graph, which the caller does not enter
        a = tf.compat.v1.placeholder(tf.float32, [None, 1], name="a")
        b = tf.compat.v1.placeholder(tf.float32, [None, 1], name="b")
        return tf.estimator.export.ServingInputReceiver({"a": a, "b": b}, {"a": a, "b": b})

    with tf.Graph().as_default():
        raw = tf.estimator.export.build_raw_serving_input_receiver_fn(
            {"a": tf.compat.v1.placeholder(tf.float32, [None, 1], name="a"),
             "b": tf.compat.v1.placeholder(tf.float32, [None, 1], name="b")}
        )
    feeds = {"a": tf.constant(X[:, :1]), "b": tf.constant(X[:, 1:])}
    for fn in (receiver, raw):
        served = []
        for est, sub in ((ref, "tf"), (ours, "ours")):
            path = est.export_saved_model(str(tmp_path / sub / "export"), fn)
            path = path.decode() if isinstance(path, bytes) else path
            loaded = tf.saved_model.load(path)
            served.append(loaded.signatures["serving_default"](**feeds)["output"].numpy())
        np.testing.assert_array_equal(served[0], served[1])


def test_what_cannot_be_honoured_is_refused_clearly(tmp_path):
    ours = KMeansClustering(3, model_dir=str(tmp_path), initial_clusters=INIT, use_mini_batch=False)
    ours.train(lambda: X, steps=1)
    with_default = tf.estimator.export.build_parsing_serving_input_receiver_fn(
        {"a": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0]), "b": tf.io.FixedLenFeature([1], tf.float32)}
    )
    with pytest.raises(ValueError, match="default value"):
        ours.export_saved_model(str(tmp_path / "e"), with_default)
    own_op = tf.estimator.SummarySaverHook(save_steps=1, output_dir=str(tmp_path / "s"), summary_op=[])
    with pytest.raises(ValueError, match="summary_op"):
        ours.train(lambda: X, steps=1, hooks=[own_op])
    elsewhere = tf.estimator.CheckpointSaverHook(str(tmp_path / "elsewhere"), save_steps=1)
    with pytest.raises(ValueError, match="model_dir"):
        ours.train(lambda: X, steps=1, hooks=[elsewhere])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parsing_receiver_serves_tf_examples_as_tensorflow_does(tmp_path, dtype):
    x = X.astype(dtype)
    ref = TFKMeans(num_clusters=3, model_dir=str(tmp_path / "tf"), initial_clusters=INIT, use_mini_batch=False)
    ours = KMeansClustering(3, model_dir=str(tmp_path / "ours"), initial_clusters=INIT.astype(dtype), use_mini_batch=False)
    ref.train(lambda: tf.constant(X), steps=2)
    ours.train(lambda: x, steps=2)
    spec = {"b": tf.io.FixedLenFeature([1], tf.float32), "a": tf.io.FixedLenFeature([1], tf.float32)}
    fn = tf.estimator.export.build_parsing_serving_input_receiver_fn(spec)

    def example(row):
        feature = {
            "a": tf.train.Feature(float_list=tf.train.FloatList(value=[row[0]])),
            "b": tf.train.Feature(float_list=tf.train.FloatList(value=[row[1]])),
            "unused": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"ignored"])),
        }
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    examples = tf.constant([example(r) for r in X[:20]])
    served = {}
    for est, sub in ((ref, "tf"), (ours, "ours")):
        path = est.export_saved_model(str(tmp_path / sub / "export"), fn)
        path = path.decode() if isinstance(path, bytes) else path
        loaded = tf.saved_model.load(path)
        assert list(loaded.signatures["serving_default"].structured_input_signature[1]) == ["examples"]
        served[sub] = {
            name: loaded.signatures[name](examples=examples)["output"].numpy()
            for name in ("serving_default", "all_distances")
        }
    np.testing.assert_array_equal(served["ours"]["serving_default"], served["tf"]["serving_default"])
    np.testing.assert_allclose(served["ours"]["all_distances"], served["tf"]["all_distances"], rtol=1e-4, atol=1e-4)
    # A missing (required) feature is an error on both.
    bad = tf.constant([tf.train.Example().SerializeToString()])
    for sub in ("tf", "ours"):
        loaded = tf.saved_model.load(str(next((tmp_path / sub / "export").iterdir())))
        with pytest.raises(tf.errors.InvalidArgumentError):
            loaded.signatures["serving_default"](examples=bad)
