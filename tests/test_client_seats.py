"""The client's sans-IO parts: the seat tracker (positions, replay accounting, resume
bookkeeping) and the token refresh schedule."""

from __future__ import annotations

import math
from typing import Any

import attrs

from client import REFRESH_AT, SeatTracker
from client._auth import refresh_deadline
from protocol import GuardianLiveStarted, ResumeReply, SeatReply


def seat_reply(code: str = "ABCD", seq: int = 3, **overrides: Any) -> SeatReply:
    fields: dict[str, Any] = {
        "code": code,
        "status": "active",
        "host_id": "p_host",
        "participants": [],
        "rooms": [],
        "state": {},
        "version": 0,
        "seq": seq,
        "epoch": "e1",
        "started_at": "2026-01-01T00:00:00.000+00:00",
        "participant_id": "p_me",
        "role": "participant",
        "resume_token": f"{code}.p_me.secret",
    }
    return SeatReply(**{**fields, **overrides})


def resume_reply(
    code: str = "ABCD", *, seq: int, recovered: bool = True, replayed: int = 0, epoch: str = "e1"
) -> ResumeReply:
    return ResumeReply(
        participant_id="p_me",
        role="participant",
        code=code,
        epoch=epoch,
        seq=seq,
        status="active",
        state={},
        version=0,
        recovered=recovered,
        replayed=replayed,
    )


def test_a_seat_starts_at_its_reply_and_follows_events_and_own_messages() -> None:
    seats = SeatTracker()
    seat = seats.seated(seat_reply(seq=3))
    assert seat.resume_fields() == {"token": "ABCD.p_me.secret", "last_seq": 3, "epoch": "e1"}
    seats.observe("ABCD", 4)
    seats.own_message(None, 6)  # its own message is not echoed: the reply accounts for it
    seats.observe("ABCD", 5)  # an event that was under way while it sent
    assert seat.last_seq == 6
    seats.observe("OTHER", 99)  # another session's event moves nothing
    assert seat.last_seq == 6


def test_a_recovered_resume_counts_its_seq_only_after_the_replay() -> None:
    seats = SeatTracker()
    seat = seats.seated(seat_reply(seq=10))
    seats.resumed(resume_reply(seq=14, replayed=3))  # 11..13 replayed, 14 is its own return
    assert seat.last_seq == 10
    seats.observe("ABCD", 11)
    seats.observe("ABCD", 12)
    assert seat.last_seq == 12  # a drop now resumes from 12, not 14
    seats.observe("ABCD", 13)
    assert seat.last_seq == 14
    seats.observe("ABCD", 15)
    assert seat.last_seq == 15


def test_a_resume_with_nothing_missed_or_a_snapshot_takes_the_reply_position() -> None:
    seats = SeatTracker()
    seat = seats.seated(seat_reply(seq=10))
    seats.resumed(resume_reply(seq=11))
    assert seat.last_seq == 11
    seats.resumed(resume_reply(seq=7, recovered=False, epoch="e2"))  # history lost: restart
    assert (seat.last_seq, seat.epoch) == (7, "e2")


def test_several_seats_are_tracked_apart_and_named_by_code() -> None:
    seats = SeatTracker()
    first = seats.seated(seat_reply("AAAA", seq=1))
    second = seats.seated(seat_reply("BBBB", seq=5))
    assert seats.get(None) is second and seats.get("aaaa") is first
    seats.observe("AAAA", 2)
    seats.own_message("BBBB", 9)
    assert (first.last_seq, second.last_seq) == (2, 9)
    assert [s.code for s in seats] == ["AAAA", "BBBB"]
    assert seats.ended("BBBB") is second
    assert seats.get(None) is first and len(seats) == 1
    assert seats.resumed(resume_reply("BBBB", seq=20)) is None  # ended meanwhile: ignored
    assert seats.ended("BBBB") is None


def test_joining_again_replaces_the_seat_and_its_token() -> None:
    seats = SeatTracker()
    seats.seated(seat_reply("AAAA", seq=1))
    seats.seated(seat_reply("BBBB", seq=1))
    again = seats.seated(seat_reply("AAAA", seq=8, resume_token="AAAA.p_me.new"))
    assert seats.get(None) is again and again.token == "AAAA.p_me.new" and len(seats) == 2


def test_a_guardian_seat_given_by_the_server_is_tracked_like_a_joined_one() -> None:
    seats = SeatTracker()
    reply = attrs.asdict(seat_reply("LIVE", seq=4, role="guardian"), recurse=False)
    notice = GuardianLiveStarted(**reply, ward_id="u_ward", session="LIVE")
    seat = seats.seated(notice)
    assert (seat.role, seat.last_seq, seat.token) == ("guardian", 4, "LIVE.p_me.secret")
    assert seat.resume_fields() == {"token": "LIVE.p_me.secret", "last_seq": 4, "epoch": "e1"}


def test_a_seat_is_dropped_only_if_it_was_not_given_again_meanwhile() -> None:
    seats = SeatTracker()
    old = seats.seated(seat_reply("LIVE", seq=4))
    new = seats.seated(seat_reply("LIVE", seq=9, resume_token="LIVE.p_me.rotated"))
    assert seats.drop(old) is False and seats.get("LIVE") is new  # a resume with the old token
    assert seats.drop(new) is True and seats.get("LIVE") is None
    assert seats.drop(new) is False


def test_when_a_token_is_refreshed() -> None:
    assert refresh_deadline(100.0, 60.0) == 100.0 + REFRESH_AT * 60.0
    assert refresh_deadline(100.0, -5.0) == math.inf  # past its expiry: reconnect instead
    assert refresh_deadline(100.0, 10.0, retry=True) == 108.0
    assert refresh_deadline(100.0, 1.1, retry=True) == 101.0  # no sooner than a second
    assert refresh_deadline(100.0, 0.9, retry=True) == math.inf  # too late: let it expire
