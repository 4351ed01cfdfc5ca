"""The apprise sink delivers an alert to a local JSON endpoint (apprise's json:// service), reports a failed
delivery, and its URLs stay masked in `config show` and scrubbed as secrets."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from adapters.alerts import AlertDeliveryError, build_alert_sinks
from adapters.apprise_sink import AppriseSink
from config.settings import Settings
from pipeline.core.models import Alert


@pytest.fixture
async def endpoint():
    received: list[dict] = []
    status = {"code": 200}

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=status["code"])

    app = web.Application()
    app.router.add_post("/hook/secret-path-token", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"json://127.0.0.1:{port}/hook/secret-path-token", received, status
    await runner.cleanup()


async def test_delivers_and_reports_failure(endpoint) -> None:
    url, received, status = endpoint
    settings = Settings(alerts={"apprise_urls": [url]})
    sinks = build_alert_sinks(settings.alerts)
    sink = next(s for s in sinks if isinstance(s, AppriseSink))
    assert sink.services == ["JSON"]
    await sink.send(Alert(kind="kill_switch_tripped", message="kill switch tripped (cli): test", severity="critical"))
    assert len(received) == 1
    assert "kill switch tripped" in received[0]["message"] and "kill_switch_tripped" in received[0]["title"]
    status["code"] = 500
    with pytest.raises(AlertDeliveryError) as failed:
        await sink.send(Alert(kind="broker_disconnected", message="paper down", severity="warning"))
    assert "secret-path-token" not in str(failed.value)


def test_urls_are_secrets() -> None:
    url = "tgram://123456789:AAEsecretbottoken/987654"
    settings = Settings(alerts={"apprise_urls": [url]})
    assert "AAEsecretbottoken" not in json.dumps(settings.masked())
    assert url in settings.secret_values()
    with pytest.raises(ValueError, match=r"apprise_urls\[0\]"):
        AppriseSink(["nosuchscheme://x"])
