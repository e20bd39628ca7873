def test_health(local_client):
    assert local_client.get("/health").json()["status"] == "ok"


def test_fixtures(admin_client, make_user, anonymous):
    viewer = make_user("viewer1", "viewer")
    assert viewer.get("/api/cloud/auth/me").json()["user"]["username"] == "viewer1"
    assert anonymous.get("/api/cloud/auth/me").status_code == 401
