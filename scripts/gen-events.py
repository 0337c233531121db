#!/usr/bin/env python3
"""Generate realistic SavvyCal events as NDJSON (one compact event object per line) for benchmarks.

Usage:
  gen-events.py N [--size full|small] [--ids sequential|random] [--out FILE]
                                                         N events (stdout when no --out)
  gen-events.py --envelope [--size full|small]           one webhook body (event.created envelope)
                                                         of the same size, for oha's -D file

Events are shaped like shared/examples/event.json: unique ids and increasing created_at. Ids are
`event_<n>` by default; `--ids random` gives ids shaped like the example's
(`event_7RDQF0G5VT8PAV4ERN90B5Q27Y`: 26 Crockford base32 digits, no order), derived from n so a
file is the same on every run. The ledger keys outcomes by id, so the two show what id order
costs it. `--size full` (default) is the example's shape with two attendees (~1.9 KB a line);
`--size small` drops the optional blocks and keeps one attendee (~500 bytes a line) for the
million-event memory run.
"""

import argparse
import datetime
import hashlib
import json
import sys

BASE = datetime.datetime(2020, 11, 20, 19, 53, 46, tzinfo=datetime.timezone.utc)


def ts(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def person(i, n, organizer):
    first, last = ("Derrick", "Reimer") if organizer else ("Guest", f"Number{n}")
    return {
        "id": f"attendee_{n:026d}{i}",
        "display_name": f"{first} {last}",
        "first_name": first,
        "last_name": last,
        "email": f"{first.lower()}.{n}@example.com",
        "phone_number": None,
        "time_zone": "America/Chicago",
        "response_status": "accepted",
        "is_organizer": organizer,
        "is_scheduler": not organizer,
        "fields": []
        if organizer
        else [{"id": "field_1", "type": "text", "label": "What would you like to talk about?", "value": "Webhooks"}],
    }


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def random_id(n):
    # 128 bits in 26 base32 digits (so the first is 0-7, as in the example), from n's hash.
    v = int.from_bytes(hashlib.sha256(n.to_bytes(8, "little")).digest()[:16], "big")
    digits = []
    for _ in range(26):
        digits.append(CROCKFORD[v & 31])
        v >>= 5
    return "event_" + "".join(reversed(digits))


def event(n, size):
    created = BASE + datetime.timedelta(seconds=37 * n)
    start = created + datetime.timedelta(days=1, minutes=7)
    end = start + datetime.timedelta(minutes=30)
    if size == "small":
        guest = person(1, n, False)
        return {
            "id": f"event_{n}",
            "state": "confirmed",
            "summary": f"Chat with {guest['display_name']}",
            "created_at": ts(created),
            "start_at": ts(start),
            "end_at": ts(end),
            "duration": 30,
            "canceled_at": None,
            "link": {"id": "link_01ED74HMFGVZ92YVCWTD8Y8H6X", "slug": "chat"},
            "attendees": [{k: guest[k] for k in ("id", "display_name", "email", "time_zone", "is_organizer")}],
            "url": f"https://savvycal.com/events/{n:026d}",
        }
    organizer, guest = person(0, n, True), person(1, n, False)
    return {
        "id": f"event_{n}",
        "state": "confirmed",
        "summary": f"Chat with {guest['display_name']}",
        "description": "",
        "additional_info": None,
        "location": None,
        "created_at": ts(created),
        "start_at": ts(start),
        "end_at": ts(end),
        "duration": 30,
        "canceled_at": None,
        "cancel_reason": None,
        "rescheduled_at": None,
        "reschedule_reason": None,
        "original_start_at": ts(start),
        "original_end_at": ts(end),
        "conferencing": {
            "type": "zoom",
            "join_url": f"https://zoom.us/j/{83019998440 + n}",
            "meeting_id": str(83019998440 + n),
            "instructions": None,
        },
        "link": {"id": "link_01ED74HMFGVZ92YVCWTD8Y8H6X", "name": "30 min", "slug": "chat"},
        "poll": None,
        "scope": None,
        "organizer": organizer,
        "scheduler": guest,
        "attendees": [organizer, guest],
        "payment": None,
        "metadata": {},
        "url": f"https://savvycal.com/events/{n:026d}",
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("n", type=int, nargs="?", default=0)
    p.add_argument("--size", choices=["full", "small"], default="full")
    p.add_argument("--out")
    p.add_argument("--ids", choices=["sequential", "random"], default="sequential")
    p.add_argument("--envelope", action="store_true")
    a = p.parse_args()
    out = open(a.out, "w") if a.out else sys.stdout
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    if a.envelope:
        ev = event(1, a.size)
        out.write(
            dumps(
                {
                    "type": "event.created",
                    "id": "payload_0123456789abcdef0123456789abcdef",
                    "version": "2020-11-18",
                    "occurred_at": ev["created_at"],
                    "payload": ev,
                }
            )
        )
    else:
        write = out.write
        chunk = []
        for n in range(1, a.n + 1):
            ev = event(n, a.size)
            if a.ids == "random":
                ev["id"] = random_id(n)
            chunk.append(dumps(ev))
            if len(chunk) == 1000:
                write("\n".join(chunk) + "\n")
                chunk.clear()
        if chunk:
            write("\n".join(chunk) + "\n")
    out.flush()


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # the reader stopped early (e.g. `| head`)
        sys.stderr.close()
        sys.exit(0)
