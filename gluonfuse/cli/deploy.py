"""Commands to deploy trained networks: quantize (calibrated int8 with mxnet's MKLDNN backend)."""
import click


@click.command("quantize")
@click.argument("run_dir", required=False)
@click.option("--which", default="best", show_default=True, help="best, last or an epoch number (RUN_DIR).")
@click.option("--calib-images", type=int, default=1000, show_default=True, metavar="N",
              help="Calibration images, from the training set (its normalisation, no augmentation).")
@click.option("--calib-mode", type=click.Choice(["naive", "entropy"]), default="naive", show_default=True,
              help="naive: each layer's observed min/max; entropy: thresholds that minimise the KL "
                   "divergence of each layer's int8 output (slower to calibrate).")
@click.option("--exclude", multiple=True, metavar="LAYER_PATTERN",
              help="Keep the layers whose node names match in fp32 (shell pattern, repeatable). "
                   "Layers that must stay fp32 (drop-path masks, stochastic-depth gates) are excluded "
                   "automatically.")
@click.option("--out", "out_dir", default=None, metavar="DIR",
              help="Where to write (default: RUN_DIR/export, or the --symbol file's directory).")
@click.option("--symbol", "symbol_file", default=None, help="An exported -symbol.json (instead of RUN_DIR).")
@click.option("--params", "params_file", default=None, help="The matching .params file.")
@click.option("--data", default=None, metavar="PATH.rec",
              help="With --symbol: the calibration .rec (a train.rec: its test.rec beside it measures the "
                   "errors, otherwise the same file).")
def quantize_cmd(run_dir, which, calib_images, calib_mode, exclude, out_dir, symbol_file, params_file, data):
    """Calibrate and quantize a trained network to int8; report accuracy and speed against fp32.

    Writes <name>-int8-symbol.json, <name>-int8-0000.params and <name>-int8-meta.json (name: best,
    last or epoch-NNNN for a run; the export's name for --symbol). The meta file records the
    calibration, the layers kept in fp32, the fp32 and int8 top-1/top-5 error on the test set and
    the speed of both, measured side by side at the evaluation batch size. Plain MXNet loads the
    pair: mx.gluon.SymbolBlock.imports(SYMBOL, ['data'], PARAMS). Needs mxnet with MKLDNN (CPU).

      gluonfuse quantize runs/cross_d56_w1_cifar10_1 --calib-images 1000

      gluonfuse quantize --symbol exp/best-symbol.json --params exp/best-0000.params --data data/cifar10/train.rec
    """
    from gluonfuse.deploy.quantize import exported_job, quantize_job, run_job

    if run_dir and (symbol_file or params_file or data):
        raise ValueError("give RUN_DIR or --symbol/--params/--data, not both")
    if run_dir:
        job = run_job(run_dir, which, out_dir)
    elif symbol_file and params_file and data:
        job = exported_job(symbol_file, params_file, data, out_dir)
    else:
        raise ValueError("give a RUN_DIR, or --symbol F --params F --data PATH.rec")
    meta = quantize_job(job, calib_images=calib_images, calib_mode=calib_mode, exclude=exclude, echo=click.echo)
    _report(meta)


def _percent(value):
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _report(meta):
    acc, speed = meta["accuracy"], meta["speed"]
    fp32, int8 = acc["fp32"], acc["int8"]
    click.echo(f"top-1 error: int8 {_percent(int8['top1_error'])}, fp32 {_percent(fp32['top1_error'])} "
               f"({acc['top1_change_points']:+.2f} points); top-5 error: int8 {_percent(int8['top5_error'])}, "
               f"fp32 {_percent(fp32['top5_error'])}; {acc['images']} images of {acc['data']}")
    line = (f"speed at batch {speed['batch_size']}: int8 {speed['int8_images_per_sec']:.0f} img/s, "
            f"fp32 {speed['fp32_images_per_sec']:.0f} img/s: {speed['int8_speedup']:.2f}x")
    if speed["fp32_fused_images_per_sec"]:
        line += f" (fp32 MKLDNN-fused {speed['fp32_fused_images_per_sec']:.0f} img/s)"
    click.echo(line)
    click.echo("wrote " + ", ".join(meta["paths"][k] for k in ("symbol", "params", "meta")))


COMMANDS = [quantize_cmd]
