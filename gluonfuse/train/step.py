"""The device step: initialisation, the gluon Trainer, one training step, and the MXNet workarounds.

Per step the global batch is split across the devices (``split_and_load``, uneven splits allowed),
each device runs the hybridized network (static memory) under ``autograd.record``, and
``gluon.Trainer`` aggregates the gradients through the kvstore and applies the optimizer.
The benchmarks in tools/ train with these same pieces.

Initialisation (docs/recipes.md#initialisation): Dense weights Xavier(uniform, 'in', 1), every other weight
Xavier(gaussian, 'in', 2), BatchNorm gamma 1 and beta 0, biases 0. Weight decay applies to every
trainable parameter (weights, biases, gamma, beta), as in the authors' ``Nesterov`` optimizer.

Four mxnet 1.9.1 behaviours are worked around here, each where it bites: BatchNorm running
statistics kept out of the kvstore (:func:`make_trainer`, :func:`average_running_stats`), a
distributed kvstore settled before its first update (:meth:`Step._settle`), the dist_async learning
rate scheduled on the servers (:func:`schedule_on_servers`), and evaluation through a copy when the
optimizer updates weights in place (:func:`evaluation_copy`).
"""
from gluonfuse.train.metrics import as_outputs


def initialize(net, contexts):
    """The recipes' mixed Xavier initialisation (docs/recipes.md#initialisation) on ``contexts``."""
    import mxnet as mx
    from mxnet.gluon import nn

    def dense_uniform(block):
        if isinstance(block, nn.Dense):
            block.weight.init = mx.init.Xavier(rnd_type="uniform", factor_type="in", magnitude=1)

    net.apply(dense_uniform)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2), ctx=contexts)
    return net


def make_trainer(net, optimizer, lr, wd, momentum, kvstore, update_on_kvstore=None):
    """A gluon Trainer; ``kvstore`` is a type name or a created KVStore (a distributed job's).

    ``update_on_kvstore=None`` lets MXNet decide.
    """
    import mxnet as mx

    params = {"learning_rate": lr, "wd": wd}
    if optimizer in ("nag", "sgd"):
        params["momentum"] = momentum
    kv = mx.kv.create(kvstore) if isinstance(kvstore, str) else kvstore
    trainer = mx.gluon.Trainer(net.collect_params(), optimizer, params, kvstore=kv, update_on_kvstore=update_on_kvstore)
    # Keep the BatchNorm running statistics out of the kvstore. The Trainer would copy them into it
    # at the first step and broadcast them back to every device, reading them before the
    # hybridized (static-alloc) forward has written them: the first update was lost and every
    # device got device 0's values. gluonfuse averages them itself (average_running_stats).
    trainer._params_to_init = [p for p in trainer._params_to_init if p.grad_req != "null"]
    return trainer


def schedule_on_servers(trainer, scheduler, begin_num_update=0):
    """dist_async: give the optimizer an update-count lr ``scheduler`` before it travels to the servers.

    MXNet never forwards a worker's lr change to the servers, which run the optimizer under
    dist_async; the optimizer object is sent at the first step, so its schedule and update count
    (``begin_num_update``, where a resumed run starts) must be in place before then.
    """
    opt = trainer._optimizer
    if scheduler is not None:
        scheduler.base_lr = opt.lr
        opt.lr_scheduler = scheduler
    opt.begin_num_update = opt.num_update = begin_num_update
    return trainer


def average_running_stats(net):
    """Average the BatchNorm running statistics over the devices and give every device the mean.

    Each device updates its own running mean/var from its share of the batch; the kvstore only
    aggregates gradients. Like MXNet's Module (which averages auxiliary states when it hands out
    parameters), the trainer averages them before evaluating and checkpointing, so a checkpoint
    evaluates the same on one device as on many.
    """
    import mxnet as mx

    mx.nd.waitall()  # a static-alloc forward's writes to them are not ordered before later reads
    for p in net.collect_params().values():
        if p.grad_req == "null" and len(p.list_ctx()) > 1:
            arrays = p.list_data()
            mean = sum(a.as_in_context(arrays[0].context) for a in arrays) / len(arrays)
            for a in arrays:  # in place: Parameter.set_data would re-initialise the kvstore
                mean.copyto(a)


def cross_entropy_loss():
    """The training loss: softmax cross-entropy, summed over a network's outputs.

    Returns ``loss(outputs, label)`` (``outputs`` a list, one entry per network output) giving one
    value per sample; multi-output networks (``ensemble``) train on the sum of their members' losses.
    """
    import mxnet as mx

    softmax_ce = mx.gluon.loss.SoftmaxCrossEntropyLoss()

    def loss(outputs, label):
        return sum(softmax_ce(o, label) for o in outputs)

    return loss


class Step:
    """One training step over a global batch: forward/backward on every device, then the update.

    ``num_workers``: the workers of a distributed job, each calling with its own batch; gradients are
    summed over the job, so the update divides by the global batch. ``loss``: ``loss(outputs,
    label)`` per device (default :func:`cross_entropy_loss`). With AMP's loss scaler on the trainer
    (``--dtype float16``) the loss is scaled dynamically. Returns the per-device outputs (lists, one
    entry per network output) for the metrics. ``grad_clip``: the largest global norm of the update
    gradient (:func:`gluonfuse.train.regularize.clip_global_norm`; the trainer must update on the
    workers, ``update_on_kvstore=False``).
    """

    def __init__(self, net, trainer, contexts, num_workers=1, loss=None, grad_clip=None):
        import mxnet as mx

        self.net, self.trainer, self.contexts = net, trainer, contexts
        self.num_workers, self.grad_clip = num_workers, grad_clip
        self.loss = loss or cross_entropy_loss()
        self.autograd = mx.autograd
        kv = trainer._kvstore_params["kvstore"]
        self._settled = not (isinstance(kv, mx.kv.KVStore) and "dist" in kv.type)

    def __call__(self, data, label, batch_size):
        with self.autograd.record():
            outs = [as_outputs(self.net(x)) for x in data]
            losses = [self.loss(out, y) for out, y in zip(outs, label)]
        if getattr(self.trainer, "_amp_loss_scaler", None) is not None:
            from mxnet.contrib import amp

            with amp.scale_loss(losses, self.trainer) as scaled:
                self.autograd.backward(scaled)
        else:
            self.autograd.backward(losses)
        if not self._settled:
            self._settle(batch_size * self.num_workers)
        if self.grad_clip:
            self._clipped_update(batch_size * self.num_workers)
        else:
            self.trainer.step(batch_size * self.num_workers)
        return outs

    def _clipped_update(self, batch_size):
        from gluonfuse.train.regularize import clip_global_norm

        self.trainer.allreduce_grads()  # every device (and worker) now holds the job's sums
        clip_global_norm(self.net.collect_params().values(), self.grad_clip, self.trainer._scale / batch_size)
        self.trainer.update(batch_size)

    def _settle(self, batch_size):
        """Set up a distributed kvstore completely before the first update.

        mxnet 1.9.1's dist kvstore fills in a key's server routing, unlocked, the first time the key
        is used; in the Trainer's first step the broadcast pull of a key and its gradient push-pull
        can do that at once and corrupt it, and the workers' weights drift apart (seen in about one
        run in five). So the parameters are broadcast here and waited for.
        """
        import mxnet as mx

        trainer = self.trainer
        # with dist_async the optimizer travels to the servers at initialisation: give it its scale first
        trainer._optimizer.rescale_grad = trainer._scale / batch_size
        if not trainer._kv_initialized:
            trainer._init_kvstore()
        if trainer._params_to_init:
            trainer._init_params()
        mx.nd.waitall()
        self._settled = True


def evaluation_copy(network, model_kwargs, contexts):
    """A second instance of the network for evaluation, when the optimizer updates weights in place.

    In mxnet 1.9.1 (MKLDNN), an inference pass through weight arrays that a worker-side optimizer
    then updates in place corrupts those updates, nondeterministically (NAG: measurably after one
    test pass). Evaluating a copy leaves the trained weights alone; :func:`copy_parameters` refreshes
    it before every evaluation.
    """
    from gluonfuse.models import get_model

    copy = get_model(network, **model_kwargs)
    copy.initialize(ctx=contexts)  # values are replaced before every evaluation
    copy.hybridize(static_alloc=True, static_shape=True)
    return copy


def copy_parameters(source, target, ctx):
    """``target``'s parameters := ``source``'s on ``ctx`` (the same architecture)."""
    targets = target._collect_params_with_prefix()
    for name, param in source._collect_params_with_prefix().items():
        targets[name].set_data(param.data(ctx))
