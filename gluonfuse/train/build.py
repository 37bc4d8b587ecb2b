"""From a run's configuration and plan to the parts its epoch loop drives: :func:`build_training`.

Each choice a training option makes has one small function here: the loss (:func:`make_loss`), the
learning-rate schedule (:func:`make_schedule`), what is tested after each epoch
(:func:`make_evaluators`) and the update (:func:`make_trainer` with its kvstore placement). A new
option adds its field to :class:`~gluonfuse.train.config.TrainConfig` and its effect to one of
these (a batch transform such as mixup goes to the ``transform`` of :class:`TrainingPass`).
"""
from gluonfuse.train import precision
from gluonfuse.train.checkpoint import seed_everything
from gluonfuse.train.ema import WeightAverage
from gluonfuse.train.epoch import Evaluator, Training, TrainingPass
from gluonfuse.train.evaluate import column_view
from gluonfuse.train.regularize import BatchRegularizer, exempt_from_weight_decay, soft_cross_entropy_loss
from gluonfuse.train.schedule import make_schedule as schedule_of
from gluonfuse.train.step import (Step, cross_entropy_loss, evaluation_copy, initialize, make_trainer,
                                  schedule_on_servers)


def build_training(plan, team, contexts, start=0, report=None):
    """Network, trainer, step, schedule and evaluators of ``plan`` on ``contexts``, from epoch ``start``.

    ``report``: a :class:`~gluonfuse.train.epoch.PassLog` for the training passes.
    """
    config, facts = plan.config, plan.facts
    precision.activate(config.dtype)  # before the network is built
    seed_everything(config.seed)
    net = make_network(config.network, facts.model_kwargs, contexts)
    if config.no_wd_bn_bias:
        exempt_from_weight_decay(net)
    on_kvstore = _update_on_kvstore(team, config.dtype)
    if config.grad_clip and on_kvstore is None:
        on_kvstore = False  # the clipped update reads the aggregated gradients on the workers
    trainer = make_trainer(net, config.optimizer, config.lr, config.wd, config.momentum, team.kv or config.kvstore,
                           update_on_kvstore=on_kvstore)
    schedule = make_schedule(config, plan.steps)
    if team.asynchronous:
        updates = plan.workers * plan.steps  # per epoch, counted on every server key
        schedule_on_servers(trainer, schedule.on_servers(updates), start * updates)
    precision.init_trainer(trainer, config.dtype)
    regularizer = make_regularizer(config, facts.classes)
    step = Step(net, trainer, contexts, num_workers=plan.workers, loss=make_loss(regularizer),
                grad_clip=config.grad_clip or None)
    eval_net = evaluation_copy(config.network, facts.model_kwargs, contexts) if on_kvstore is False else net
    ema, evaluators = make_ema(config, net, facts.model_kwargs, contexts), make_evaluators(net, eval_net)
    if ema is not None:
        evaluators.append(Evaluator("ema", ema.eval_net, label="EMA"))
    training_pass = TrainingPass(step, facts.classes, report, transform=regularizer if regularizer.active else None,
                                 reduce=team.reduce_meter("train"), source=facts.train_rec,
                                 after_step=ema.update if ema is not None else None)
    return Training(plan=plan, team=team, contexts=contexts, net=net, trainer=trainer, schedule=schedule,
                    training_pass=training_pass, evaluators=evaluators, eval_net=eval_net, ema=ema)


def make_network(network, model_kwargs, contexts):
    """The network, initialised (docs/recipes.md#initialisation) on ``contexts`` and hybridized with static memory."""
    from gluonfuse.models import get_model

    net = initialize(get_model(network, **model_kwargs), contexts)
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def _update_on_kvstore(team, dtype):
    # dist_sync: the servers only add gradients and every worker runs the optimizer (so its state
    # can be checkpointed); float16's loss scaler needs the update on the workers too
    if team.asynchronous:
        return True
    return False if team.distributed or precision.uses_loss_scaling(dtype) else None


def make_regularizer(config, classes):
    """The batch transform of ``config``'s label smoothing, mixup, cutmix and cutout (inactive when all are off)."""
    return BatchRegularizer(classes, config.label_smoothing, config.mixup, config.cutmix, config.mix_prob,
                            config.cutout)


def make_loss(regularizer):
    """The training loss: softmax cross-entropy summed over the network's outputs, against the soft
    targets of ``regularizer`` when it makes them (label smoothing, mixup, cutmix)."""
    return soft_cross_entropy_loss() if regularizer.soft else cross_entropy_loss()


def make_schedule(config, iterations):
    """The learning-rate schedule of ``config`` (``iterations`` per epoch): the recipe's ``lr``, times
    ``lr_factor`` after each of ``lr_steps``, unless ``lr_schedule`` or a warm-up asks for another."""
    return schedule_of(config.lr_schedule, config.lr, config.epochs, iterations, config.lr_factor,
                       tuple(config.lr_steps), config.warmup_epochs, config.warmup_lr)


def make_ema(config, net, model_kwargs, contexts):
    """The moving average of the weights (``--ema``) with its own network to evaluate, or None."""
    if not config.ema:
        return None
    ema = WeightAverage(net, config.ema, contexts[0])
    ema.eval_net = evaluation_copy(config.network, model_kwargs, contexts)
    return ema


def make_evaluators(net, eval_net):
    """The network (as ``eval_net``) and, for FractalNet, its deepest column alone with the same
    weights (docs/networks.md#deepest-column)."""
    evaluators = [Evaluator("test", eval_net)]
    from gluonfuse.models.views import get_views

    deepest = get_views(net).column_count()
    if deepest > 1:
        evaluators.append(Evaluator(f"column{deepest}", column_view(eval_net, deepest), member=deepest,
                                    label=f"column {deepest}"))
    return evaluators
