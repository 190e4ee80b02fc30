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

And one change to its speed: moto 5.2.5 finds an EC2 resource's tags by matching every tag of
the region against the resource's id, so a read filtered by tag (DescribeSecurityGroups with
`tag-key`, as Cordon reads its groups) costs the number of resources times the number of tags.
With the thousand claim groups of the benchmark's burst of 1,000, one such read took moto 3.6 s
(200 groups: 0.14 s), and moto, not the modelled AWS, bounded the burst. Here a resource's tags
are looked up by its id, which gives the same answer: moto's match is an exact one
(`fnmatch.translate` anchors it) and ids hold none of its wildcards.
"""

import sys

import moto
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix
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


def _tags_of_this_resource(self):
    resource_id = getattr(self, "id", None)
    if not resource_id:
        return []
    # `.get`: the backend's dict is a defaultdict, and a read must not add an entry.
    tags = self.ec2_backend.tags.get(resource_id, {})
    resource_type = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
    return [
        {"resource_id": resource_id, "key": key, "value": value, "resource_type": resource_type}
        for key, value in tags.items()
    ]


TaggedEC2Resource.get_tags = _tags_of_this_resource

if __name__ == "__main__":
    from moto.server import main

    main()
