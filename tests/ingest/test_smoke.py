from tests.utils import auth, report


def test_accept_then_duplicate(ingest):
    r = report()
    first = ingest.post("/v1/reports", json=r, headers=auth())
    again = ingest.post("/v1/reports", json=r, headers=auth())
    assert (first.status_code, first.json()) == (202, {"event_id": r["event_id"], "status": "accepted"})
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
