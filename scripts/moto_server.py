"""moto's server, with one fix to its Step Functions interpreter that Cordon's runner needs.

Run with the venv's Python (scripts/setup installs the pinned moto there); it takes
moto_server's arguments: `.venv/bin/python scripts/moto_server.py -H 127.0.0.1 -p 5000`.

The fix: moto 5.2.5 creates a `.waitForTaskToken` task's token once per state, before the
state's Retry loop, so every retry reuses it. The token's callback endpoint keeps the first
answer, and each retry then "fails" at once with that answer instead of waiting for its own:
all of a state's retries are spent in its back-off sleeps (2 + 4 + 8 + 16 s for Cordon's
steps) and the Catch gets the first attempt's error. The local runner turns each
`lambda:invoke` into such a callback, so under faults a worker that failed once could never
succeed on a retry. Step Functions re-runs every attempt, as a Lambda invoke does; here each
retry gets a token and a callback endpoint of its own. tests/tests/end_to_end/emulator.rs holds moto to it.
"""

import sys

import moto
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)

PATCHED_FOR = "5.2.5"

if moto.__version__ != PATCHED_FOR:
    sys.exit(
        f"scripts/moto_server.py patches moto {PATCHED_FOR}, but moto {moto.__version__} is "
        "installed: check whether its callback tasks still reuse their token across retries, "
        "then update or drop the patch and PATCHED_FOR"
    )

_evaluate_attempt = StateTaskServiceCallback._evaluate_with_timeout


def _evaluate_attempt_with_its_own_token(self, env):
    context = env.states.context_object.context_object_data
    is_retry = context.get("State", {}).get("RetryCount", 0) > 0
    if is_retry and "Task" in context:
        token = env.states.context_object.update_task_token()
        env.callback_pool_manager.add(token)
    return _evaluate_attempt(self, env)


StateTaskServiceCallback._evaluate_with_timeout = _evaluate_attempt_with_its_own_token

if __name__ == "__main__":
    from moto.server import main

    main()
