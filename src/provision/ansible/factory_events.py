# image-factory's Ansible callback: tells the factory which task runs and how each one ended.
#
# Enabled by the factory through ANSIBLE_CALLBACKS_ENABLED; the default stdout callback still
# prints the human log. Each event is one line on stdout, prefixed by the ASCII record separator
# (0x1e) so the factory can tell it from the log, e.g.
#   \x1e{"event": "task_start", "name": "Install Apache"}
from __future__ import annotations

import json
import sys

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: factory_events
    type: notification
    short_description: task events for image-factory
    description: Prints one JSON line per task start and end, for the factory's console.
"""

MARK = "\x1e"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "factory_events"
    CALLBACK_NEEDS_ENABLED = True

    def _emit(self, **event):
        sys.stdout.write(MARK + json.dumps(event, sort_keys=True) + "\n")
        sys.stdout.flush()

    def v2_playbook_on_play_start(self, play):
        self._emit(event="play_start", name=play.get_name())

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._emit(event="task_start", name=task.get_name())

    def v2_playbook_on_handler_task_start(self, task):
        self._emit(event="task_start", name=task.get_name(), handler=True)

    def _end(self, result, status):
        self._emit(event="task_end", name=result.task_name, host=result._host.get_name(), status=status)

    def v2_runner_on_ok(self, result):
        self._end(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._end(result, "ignored" if ignore_errors else "failed")

    def v2_runner_on_skipped(self, result):
        self._end(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._end(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed.keys())
        self._emit(event="stats", hosts={h: stats.summarize(h) for h in hosts})
