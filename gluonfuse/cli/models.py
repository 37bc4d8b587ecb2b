"""Commands about networks: list, summary, export."""
import click

COMMANDS = []
