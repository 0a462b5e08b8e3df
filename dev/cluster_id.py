"""Print a new KRaft cluster id for ``dev/kafka`` (``kafka-storage format --cluster-id``).

16 random bytes in URL-safe base64 (22 characters), never starting with ``-``: one id in 64
did, and the storage tool's option parser then read it as an option ("argument
--cluster-id/-t: expected one argument"), so a broker start failed at random. Kafka's own
``random-uuid`` redraws such ids too.
"""

import base64
import uuid


def new_id() -> str:
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]
        if not text.startswith("-"):
            return text


if __name__ == "__main__":
    print(new_id())
