"""On-demand evidence (调取取证): a request's state from the gateway's answer and the vault. The
end-to-end part runs inside tests/edge/camera/test_evidence_upload.py (tests/edge/camera/
on_demand.py), which has a gateway, a camera stream, a broker and central up already."""

from __future__ import annotations

from central.gateways.evidence_requests import derive_state, named_files

SHA_A, SHA_B = "a" * 64, "b" * 64


def test_state_follows_the_answer_and_the_vault() -> None:
    assert derive_state(sent=False, answer=None, stored=set(), expired=False)[0] == "queued"
    assert derive_state(sent=True, answer=None, stored=set(), expired=False)[0] == "sent"
    state, reason, _ = derive_state(sent=True, answer=None, stored=set(), expired=True)
    assert state == "failed" and reason.startswith("expired")
    refused = (False, "malformed", "no camera watches window 7")
    assert derive_state(sent=True, answer=refused, stored=set(), expired=False)[:2] == (
        "failed",
        "malformed: no camera watches window 7",
    )
    answer = (True, "accepted", f"camera=c1 snapshot={SHA_A} clip={SHA_B} frames=20")
    assert named_files(answer[2]) == {"snapshot": SHA_A, "clip": SHA_B}
    assert derive_state(sent=True, answer=answer, stored={SHA_A}, expired=True)[0] == "uploading"
    assert derive_state(sent=True, answer=answer, stored={SHA_A, SHA_B}, expired=True)[0] == "done"
    nothing = (True, "accepted", "camera=c1")
    assert derive_state(sent=True, answer=nothing, stored=set(), expired=False)[0] == "failed"
