"""TensorBoard logs of a run (``--tensorboard [DIR]``) and of finished runs (``results --tensorboard``).

Written through tensorboardX, the optional extra ``gluonfuse[tensorboard]``: it is a pure-Python
writer that needs only numpy and protobuf (both already here), whereas mxboard is unmaintained since
2019 and TensorBoard's own writer pulls in the whole TensorBoard server; the reader of the event
files (:func:`read_events`) needs no TensorBoard either.

A training run writes per iteration ``train/loss`` and ``train/lr``; per epoch ``train/error``,
``test/error``, ``test/top5_error``, ``test/loss``, ``speed/images_per_sec`` and, with ``--ema``,
``ema/test_error``; the network graph once (from its MXNet symbol); weight histograms every
``histogram_every`` epochs. Steps: iterations count from 0 over the whole run, epochs from 1.
"""
import json
import os
import struct

# metrics.csv column -> scalar tag, per epoch
EPOCH_SCALARS = {"train_loss": "train/loss_epoch", "train_error": "train/error", "test_loss": "test/loss",
                 "test_error": "test/error", "test_top5_error": "test/top5_error",
                 "images_per_sec": "speed/images_per_sec", "ema_test_error": "ema/test_error", "lr": "train/lr_epoch"}


def summary_writer(logdir):
    """A tensorboardX SummaryWriter on ``logdir``; a one-line error when the extra is not installed."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ValueError("--tensorboard needs tensorboardX: pip install 'gluonfuse[tensorboard]' "
                         "(or pip install tensorboardX)") from None
    return SummaryWriter(logdir=logdir)


def graph_def(symbol_json):
    """A TensorBoard GraphDef of an MXNet symbol (its JSON): one node per operator and variable."""
    from tensorboardX.proto.graph_pb2 import GraphDef
    from tensorboardX.proto.node_def_pb2 import NodeDef

    nodes = json.loads(symbol_json)["nodes"]
    graph = GraphDef()
    for node in nodes:
        op = "Variable" if node["op"] == "null" else node["op"]
        graph.node.append(NodeDef(name=node["name"], op=op, input=[nodes[i[0]]["name"] for i in node["inputs"]]))
    return graph


class TensorBoardLog:
    """The event files of one training run in ``logdir`` (rank 0 writes them)."""

    def __init__(self, logdir, histogram_every=10):
        self.writer = summary_writer(logdir)
        self.histogram_every = histogram_every
        self.graph_written = False

    def iteration(self, step, loss, lr):
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/lr", lr, step)

    def record(self, result, best, net=None):
        """The epoch's scalars (and the graph the first time, histograms every ``histogram_every``)."""
        step, train, test = result.done, result.train, result.test
        scalars = {"train/error": train["error"], "test/error": test["error"], "test/loss": test["loss"],
                   "test/top5_error": test["top5_error"], "speed/images_per_sec": result.speed}
        if "ema" in result.tests:
            scalars["ema/test_error"] = result.tests["ema"]["error"]
        for tag, value in scalars.items():
            if value is not None:
                self.writer.add_scalar(tag, value, step)
        if net is not None and not self.graph_written:
            self.add_graph(net)
        if net is not None and self.histogram_every and step % self.histogram_every == 0:
            for name, param in net.collect_params().items():
                if param.grad_req != "null":
                    self.writer.add_histogram(name, param.list_data()[0].asnumpy(), step)
        self.writer.flush()

    def add_graph(self, net):
        import mxnet as mx
        from tensorboardX.proto import event_pb2

        symbol = net(mx.sym.var("data"))
        symbol = symbol[0] if isinstance(symbol, (list, tuple)) else symbol
        event = event_pb2.Event(graph_def=graph_def(symbol.tojson()).SerializeToString())
        self.writer._get_file_writer().add_event(event)
        self.graph_written = True

    def close(self):
        self.writer.close()


def export_runs(runs, out_dir):
    """Each finished run's metrics.csv as per-epoch scalars in ``out_dir/<run name>``; returns the
    directories written."""
    written = []
    for run in runs:
        logdir = os.path.join(out_dir, os.path.basename(os.path.abspath(run.path)))
        writer = summary_writer(logdir)
        for row in run.metrics:
            for column, tag in EPOCH_SCALARS.items():
                if row.get(column) not in (None, ""):
                    writer.add_scalar(tag, float(row[column]), int(row["epoch"]))
        writer.close()
        written.append(logdir)
    return written


def read_events(logdir):
    """Every event in the event files under ``logdir`` (TFRecord framing: length, its CRC, the record,
    its CRC), as (file name, Event) in file order; for tests and checks."""
    from tensorboardX.proto.event_pb2 import Event

    events = []
    for name in sorted(os.listdir(logdir)):
        if "tfevents" not in name:
            continue
        with open(os.path.join(logdir, name), "rb") as f:
            data = f.read()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            record = data[pos + 12:pos + 12 + length]
            pos += 12 + length + 4
            event = Event()
            event.ParseFromString(record)
            events.append((name, event))
    return events


def scalars(logdir):
    """``{tag: [(step, value), ...]}`` of the scalar summaries under ``logdir``."""
    found = {}
    for _, event in read_events(logdir):
        for value in event.summary.value:
            if value.HasField("simple_value"):
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found
