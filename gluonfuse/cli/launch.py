"""The distributed launcher command."""
import sys

import click


@click.command("launch", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-n", "--num-workers", type=click.IntRange(min=1), required=True, help="Number of workers.")
@click.option("-s", "--num-servers", type=click.IntRange(min=1), default=None,
              help="Number of servers (default: as many as workers).")
@click.option("--launcher", type=click.Choice(["local", "ssh", "mpi"]), default="local", show_default=True,
              help="local: every process on this machine, bound to 127.0.0.1; ssh/mpi: mxnet's launcher.")
@click.option("-H", "--hostfile", type=click.Path(dir_okay=False), default=None,
              help="Hosts for ssh/mpi, one per line.")
@click.option("--port", type=int, default=None, help="Scheduler port (local; default: a free one).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def launch_cmd(num_workers, num_servers, launcher, hostfile, port, command):
    """Run COMMAND as a distributed job on MXNet's parameter server.

    Put the command after '--', e.g.:

        gluonfuse launch -n 2 -s 1 -- gluonfuse train --network cross --depth 26 --kvstore dist_sync

    If any process fails the launcher stops the rest and exits non-zero; Ctrl-C stops the whole job.
    """
    import subprocess

    from gluonfuse.launch import launch_local, mxnet_launcher_command

    num_servers = num_servers or num_workers
    if launcher == "local":
        if hostfile:
            raise ValueError("-H/--hostfile is for the ssh and mpi launchers; 'local' runs on 127.0.0.1")
        sys.exit(launch_local(list(command), num_workers, num_servers, port=port))
    argv = mxnet_launcher_command(list(command), num_workers, num_servers, launcher, hostfile)
    sys.exit(subprocess.call(argv))


COMMANDS = [launch_cmd]
