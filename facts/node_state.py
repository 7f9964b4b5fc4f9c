"""
Several facts of one node in one command: what the node operations read, in one round trip
instead of one each (:class:`operations.node_read.NodeRead` keeps the answer for them).
"""

from __future__ import annotations

from pyinfra.api import FactBase, StringCommand
from pyinfra.api.exceptions import FactProcessError

# Ends each fact's output, with the fact's number and its exit status; no fact prints it.
MARKER = "##CILIUM-LAB-FACT-END##"


def fact_key(cls: type[FactBase], kwargs: dict) -> tuple:
    """A fact and its arguments, as :class:`NodeState` returns them and an operation asks."""
    return (cls, tuple(sorted((name, _hashable(value)) for name, value in kwargs.items())))


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def _raw(command) -> str:
    return command.get_raw_value() if isinstance(command, StringCommand) else str(command)


class NodeState(FactBase):
    """
    Returns what each of the given facts returns, read in one command, keyed by
    :func:`fact_key`: each fact's command runs in a subshell of its own, in order, under the
    same sudo, and its output goes to its own ``process``. A fact whose command failed is left
    out, as is one its ``process`` cannot read: who asks for it reads it alone, and pyinfra says
    why it fails.

    Only facts that need no precondition and no ``requires_command`` can be read so.

    .. code:: python

        host.get_fact(NodeState, facts=[(KubeProxyRules, {}), (BrNetfilter, {})])
        {
            (KubeProxyRules, ()): {"iptables": {}, "ip6tables": {}, ...},
            (BrNetfilter, ()): {"status": "builtin", ...},
        }
    """

    @staticmethod
    def default():
        return {}

    def command(self, facts):
        # pyinfra processes the output with the instance that made the command.
        self.facts = list(facts)
        parts = []
        for number, (cls, kwargs) in enumerate(facts):
            fact = cls()
            if fact.requires_command(**kwargs) or fact.shell_executable:
                raise ValueError(f"{cls.__name__} cannot be read with other facts")
            # The newline first: the fact's last line ends where its output does.
            parts.append(
                f"( {_raw(fact.command(**kwargs))}\n); printf '\\n{MARKER} {number} %s\\n' \"$?\""
            )
        return "\n".join(parts)

    def process(self, output):
        answers: dict[tuple, object] = {}
        facts = self.facts
        lines: list[str] = []
        for line in output:
            if not line.startswith(MARKER + " "):
                lines.append(line)
                continue
            number, status = (int(word) for word in line.split()[1:3])
            # The newline printed before the marker: a fact that ended its output with one
            # leaves an empty line, as pyinfra's own reading would not.
            if lines and lines[-1] == "":
                lines.pop()
            if status == 0 and number < len(facts):
                cls, kwargs = facts[number]
                fact = cls()
                try:
                    answer = fact.process(lines) if lines else fact.default()
                except FactProcessError:
                    pass
                else:
                    answers[fact_key(cls, kwargs)] = answer
            lines = []
        if lines:
            raise FactProcessError(f"NodeState: {len(lines)} lines after the last fact's end")
        return answers
