"""The ``agensbus`` command. Each command group lives in its own module."""

import click

from services.cli._errors import run_cli
from services.cli.bench import bench
from services.cli.demo import demo
from services.cli.pipeline import pipeline
from services.cli.policy import policy
from services.cli.policy_evaluate import evaluate_command
from services.cli.policy_fetch import fetch_command
from services.cli.serve import judge, learner, router, worker
from services.cli.serve_cells import serve_cells
from services.cli.simulate import simulate
from services.cli.skills import skills
from services.cli.task import task
from services.cli.topics import submit, tail
from services.cli.up import up


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="agensbus")
def cli() -> None:
    """agensbus: learned coordination for multi-agent LLM systems, over Kafka.

    Routers choose which cells (skill protocol x model) run or are skipped for each task,
    workers execute them, and the learner turns outcomes and rewards into policy snapshots.
    The commands here run the services (one each, or all with up), put tasks on the bus
    and watch it (submit, tail), inspect policies, and run the simulator and benchmarks.
    """


policy.add_command(evaluate_command)
policy.add_command(fetch_command)
cli.add_command(policy)
cli.add_command(task)
cli.add_command(pipeline)
cli.add_command(simulate)
cli.add_command(bench)
cli.add_command(demo)
cli.add_command(router)
cli.add_command(worker)
cli.add_command(judge)
cli.add_command(serve_cells)
cli.add_command(learner)
cli.add_command(up)
cli.add_command(submit)
cli.add_command(tail)
cli.add_command(skills)


def main() -> None:
    run_cli(cli)
