"""The sandbox is a second opinion, not a mirror: it imports no
client module, checks the seeds' own signature vectors with its own hashing, and
accepts the seeds' own example requests replayed against ``notifyq sandbox``."""

from __future__ import annotations

import ast
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox import ihuyi as ihuyi_box
from sandbox import itniotech as itniotech_box
from sandbox import jumdata as jumdata_box
from sandbox.seeds import mainland_number
from tests.services import Stack, free_port

SANDBOX = Path(__file__).resolve().parents[2] / "sandbox"
MODULES = sorted(SANDBOX.glob("*.py"))
#: every package of ours: the sandbox may import none but itself
OURS = (
    "api", "cli", "worker", "tasks", "store", "config", "observe",
    "scheduler", "providers", "harness",
)  # fmt: skip
#: what the sandbox may import of ours: itself


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_sandbox_modules_are_found() -> None:
    # an empty list would turn the test below into no test at all (it did, once, when
    # the sandbox moved out of providers/)
    assert len(MODULES) >= 6 and SANDBOX / "app.py" in MODULES


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_the_sandbox_imports_nothing_of_the_clients(module: Path) -> None:
    ours = {n for n in imports(module) if n.split(".")[0] in OURS}
    assert not ours, ours


# -- the seeds' vectors, through the sandbox's own hashing ----------------------------------


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324


def test_the_sandbox_checks_ihuyis_submit_password_as_the_seed_writes_it() -> None:
    # seed 7: md5('test1q784322ba1d9bb88d50cf5cdfd89k7d138xxxxxxxx11251451544941')
    seed = "test1q784322ba1d9bb88d50cf5cdfd89k7d138xxxxxxxx11251451544941"
    assert ihuyi_box.submit_password(
        "test", "1q784322ba1d9bb88d50cf5cdfd89k7d", "138xxxxxxxx", "1125", "1451544941"
    ) == md5(seed)
    assert ihuyi_box.plain_password(
        "test", "1q784322ba1d9bb88d50cf5cdfd89k7d", "1451544941"
    ) == md5("test1q784322ba1d9bb88d50cf5cdfd89k7d1451544941")


def test_the_sandbox_checks_jumdatas_sign_as_the_seed_writes_it() -> None:
    text = "xyzxy2121zxyz" + "efcefcef1121cefcefc1212121" + "1555378976238"
    assert jumdata_box.sign("xyzxy2121zxyz", "efcefcef1121cefcefc1212121", "1555378976238") == (
        hashlib.sha256(text.encode()).hexdigest()
    )


def test_the_sandbox_checks_itniotechs_sign_as_the_seed_writes_it() -> None:
    assert itniotech_box.sign("bDqJFiq9", "your api secret", "1630468800") == md5(
        "bDqJFiq9your api secret1630468800"
    )


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        ("13800138000", True),
        ("01065529988", True),  # Beijing, 0 + 10 + number
        ("02151234529", True),  # the seed's 02151****29
        ("1065529988", False),  # Beijing without its 0: what the old client sent
        ("0215123", False),
        ("+8613800138000", False),
    ],
)
def test_the_sandbox_knows_a_mainland_number_by_the_seeds_words(number: str, ok: bool) -> None:
    assert mainland_number(number) is ok


# -- the seeds' example requests, replayed against `notifyq sandbox` ------------------------

SEED_CREDENTIALS = {
    "NOTIFYQ_IHUYI_ACCOUNT": "test",
    "NOTIFYQ_IHUYI_APIKEY": "1q784322ba1d9bb88d50cf5cdfd89k7d",
    "NOTIFYQ_JUMDATA_APP_ID": "xyzxy2121zxyz",
    "NOTIFYQ_JUMDATA_APP_SECRET": "efcefcef1121cefcefc1212121",
    "NOTIFYQ_APISPACE_TOKEN": "apispace-seed-token",
    "NOTIFYQ_ITNIOTECH_API_KEY": "bDqJFiq9",
    "NOTIFYQ_ITNIOTECH_API_SECRET": "your api secret",
}


@pytest.fixture(scope="module")
def seed_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``notifyq sandbox`` holding the seeds' own credentials, and a clock tolerance wide
    enough for the seeds' own (years old) time stamps."""
    port = free_port()
    stack = Stack(tmp_path_factory.mktemp("seed-sandbox"), dict(SEED_CREDENTIALS))
    stack.sandbox(port, "--receipt-delay", "60", "--jumdata-window", "")
    url = f"http://127.0.0.1:{port}"
    httpx.post(f"{url}/_sandbox/config", json={"stamp_tolerance": 1e10}).raise_for_status()
    yield url
    stack.stop()


def test_the_ihuyi_seed_getnum_vector_is_accepted(seed_box: str) -> None:
    form = {
        "account": "test",
        "password": md5("test1q784322ba1d9bb88d50cf5cdfd89k7d1451544941"),
        "time": "1451544941",
        "format": "json",
    }
    answer = httpx.post(f"{seed_box}/webservice/voice.php?method=GetNum", data=form).json()
    assert answer["code"] == 2


def test_the_ihuyi_seed_submit_formula_is_accepted_for_a_landline(seed_box: str) -> None:
    mobile, content, stamp = (
        "01065529988",
        "您的订单号是:9633。已由顺风快递发出,请注意查收。",
        "1451544941",
    )
    form = {
        "account": "test",
        "password": md5(f"test1q784322ba1d9bb88d50cf5cdfd89k7d{mobile}{content}{stamp}"),
        "mobile": mobile,
        "content": content,
        "time": stamp,
        "format": "json",
    }
    answer = httpx.post(f"{seed_box}/webservice/voice.php?method=Submit", data=form).json()
    assert answer["code"] == 2 and answer["voiceid"] != "0"


def test_the_jumdata_seed_signature_vector_is_accepted(seed_box: str) -> None:
    stamp = "1555378976238"
    text = f"xyzxy2121zxyzefcefcef1121cefcefc1212121{stamp}"
    form = {
        "appId": "xyzxy2121zxyz",
        "timestamp": stamp,
        "sign": hashlib.sha256(text.encode()).hexdigest(),
        "mobile": "13800138000",
        "templateId": "1001",
        "param": "张三,明天",
        "playTimes": "3",
    }
    answer = httpx.post(f"{seed_box}/voice-notify/send", data=form).json()
    assert answer["code"] == 200 and answer["data"]["callId"]


def apispace_headers(content_type: str) -> dict[str, str]:
    return {
        "X-APISpace-Token": SEED_CREDENTIALS["NOTIFYQ_APISPACE_TOKEN"],
        "Authorization-Type": "apikey",
        "Content-Type": content_type,
    }


def test_the_apispace_voice_seed_request_is_accepted(seed_box: str) -> None:
    # the seed's Python example, with a number where it leaves "mobile" blank
    payload = {
        "mobile": "13800138000",
        "templateId": 1011340330258440200,
        "param": "",
        "allowedCallTime": "",
        "transData": "",
        "isNotifyFileId": "",
    }
    reply = httpx.post(
        f"{seed_box}/notify-vocie/voice-notify",
        data={k: str(v) for k, v in payload.items()},
        headers=apispace_headers("application/x-www-form-urlencoded"),
    )
    assert reply.json()["code"] == "000" and reply.json()["callId"]


def test_the_apispace_sms_seed_request_is_accepted(seed_box: str) -> None:
    payload = {
        "msg": "【Eolinker】您的验证码是：{$var}，5分钟内有效。如非本人操作，请忽略。",
        "params": "15800000000,1234;13800000000,4321",
        "sendtime": "",
        "extend": "",
        "uid": "",
    }
    reply = httpx.post(
        f"{seed_box}/sms-code/verifycode",
        content=json.dumps(payload),
        headers=apispace_headers("application/json"),
    )
    assert reply.json()["code"] == "000"


def test_the_itniotech_seed_request_is_accepted(seed_box: str) -> None:
    body = {
        "callee": "91856321412,91856321300",
        "displayNum": "1008122211",
        "fileId": "12022022570cc2484c59d4f8b9745d34226285b1e.mp3",
        "appId": "4luaKsL2",
        "maxDuration": 50,
        "maxRingingTime": 60,
        "loopCount": 2,
        "calledInfo": "calledInfo",
    }
    stamp = str(int(time.time()))
    reply = httpx.post(
        f"{seed_box}/voice/sendGroup",
        content=json.dumps(body),
        headers={
            "Content-Type": "application/json;charset=UTF-8",
            "Sign": md5(f"bDqJFiq9your api secret{stamp}"),
            "Timestamp": stamp,
            "Api-Key": "bDqJFiq9",
        },
    ).json()
    assert reply["status"] == "0"
    assert [(d["callee"], d["terminationCode"]) for d in reply["data"]] == [
        ("91856321412", "0"),
        ("91856321300", "0"),
    ]
