"""The floor under any paho-based bridge: receive and acknowledge, store nothing.

    python bench/paho_floor.py --config floor.json --count-file received.txt

A paho client as the fleet runs it (TLS with its own certificate, a persistent session,
a shared subscription to the readings at QoS 1, acknowledgements sent by the
application), whose message callback only counts. ``bench/bridges.py`` runs it as the
"paho alone" row: the readings it takes per CPU-second bound what the fleet (or any
bridge on paho) can reach in Python on this machine, whatever it does with them.

The count is written to ``--count-file`` every 0.1 s (the bridge stores nothing to
count in InfluxDB).
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="host, port, TLS files, ...")
    parser.add_argument("--count-file", type=Path, required=True)
    args = parser.parse_args()
    settings = json.loads(args.config.read_text())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=settings["client_id"],
        protocol=mqtt.MQTTv311,
        clean_session=False,
        manual_ack=True,
    )
    client.tls_set(
        ca_certs=settings["ca_file"], certfile=settings["cert_file"], keyfile=settings["key_file"]
    )
    client.max_inflight_messages_set(1000)
    received = 0

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        nonlocal received
        received += 1
        client.ack(message.mid, message.qos)

    def on_connect(_c: mqtt.Client, _u: object, _f: object, _r: object, _p: object) -> None:
        client.subscribe(settings["topic"], qos=1)

    def on_subscribe(*_: object) -> None:
        args.count_file.write_text("0")  # subscribed: the bench may start publishing

    client.on_message = on_message
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.connect(settings["host"], settings["port"])
    client.loop_start()
    written = -1
    while not stop.wait(0.1):
        if received != written and args.count_file.exists():
            written = received
            args.count_file.write_text(str(written))
    client.loop_stop()
    client.disconnect()


if __name__ == "__main__":
    main()
