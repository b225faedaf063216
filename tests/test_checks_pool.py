from django.core.checks import run_checks

from orca_db_app.checks_pool import pooling_warnings

PLAIN = {"ENGINE": "orca_db.backends.aurora", "NAME": "app"}
NATIVE_POOL = {**PLAIN, "OPTIONS": {"pool": {"max_size": 4}}}
POOL_ENGINE = {"ENGINE": "orca_db.backends.aurora_pool", "NAME": "app"}


def ids(databases):
    return [(m.id, m.msg) for m in pooling_warnings(databases)]


def test_no_warning_outside_lambda(monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    assert ids({"default": NATIVE_POOL, "other": POOL_ENGINE}) == []


def test_no_warning_for_plain_engine_on_lambda(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders")
    assert ids({"default": PLAIN}) == []


def test_warns_for_each_pooled_alias_on_lambda(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders")
    found = ids({"default": NATIVE_POOL, "other": POOL_ENGINE, "plain": PLAIN})
    assert [i for i, _ in found] == ["orca_db.W030", "orca_db.W030"]
    assert "'default'" in found[0][1] and 'OPTIONS["pool"]' in found[0][1]
    assert "'other'" in found[1][1] and "aurora_pool" in found[1][1]


def test_registered_with_django(monkeypatch, settings):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders")
    monkeypatch.setitem(settings.DATABASES, "pooled", NATIVE_POOL)
    assert "orca_db.W030" in [m.id for m in run_checks()]
