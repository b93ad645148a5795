"""``tests/mock_world.MockWorld`` (the engine tests' in-process fake) held to the emulators (``docsync_cli/sandbox``).

Every request the engine makes is sent through the real ``EspoClient``/``XaiClient`` (built by ``open_services``)
twice: to a ``MockWorld`` and to a running :class:`~docsync_sandbox.seed.Sandbox` seeded alike. Both must
answer with the same status, the same outcome at the client (the same error class, or none), a status reason
where the other gives one, and a body of the same shape. Where they disagree the emulator is the reference (it is
seeded from the design document); MockWorld is fixed, not the emulator.

"Same shape" is judged by :func:`fits`: every key MockWorld sends, the emulator sends too, with a value of the
same JSON type (recursively; lists element by element, of the same length). The emulator may send more: it
carries the many attributes of a real CRM record or collection that docsync never reads, and MockWorld stays
small. What docsync does read is required on both sides (:func:`require`). Ids and timestamps are never compared.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from docsync_cli.config import load_settings
from docsync_cli.crm.reasons import VALIDATION_REASON
from docsync_cli.errors import DocsyncError
from docsync_cli.sync.services import Services, open_services
from docsync_cli.transport.http import RetryPolicy
from docsync_sandbox.crm_profiles import DESIGN_DOC_FIELDS
from docsync_sandbox.seed import Sandbox
from tests.mock_world import CRM, ESPO_KEY, FILES, MGMT, MGMT_KEY, XAI_KEY, MockWorld

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\n%%EOF\n"
SHA = "ab" * 32
ONE_TRY = RetryPolicy(attempts=1, wait_initial=0, wait_max=0)


# -- recording what each side answered ------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    status: int
    reason: str  # X-Status-Reason (EspoCRM)
    body: Any  # parsed JSON; the bytes when the body is not JSON; None when it is empty

    @classmethod
    def of(cls, request: httpx.Request, response: httpx.Response) -> Exchange:
        body: Any = None
        if response.content.strip():
            try:
                body = response.json()
            except ValueError:
                body = response.content
        return cls(request.method, request.url.path, response.status_code,
                   response.headers.get("x-status-reason", ""), body)


class Recorder(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport, log: list[Exchange]) -> None:
        self.inner, self.log = inner, log

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        self.log.append(Exchange.of(request, response))
        return response

    def close(self) -> None:
        self.inner.close()


@dataclass
class Side:
    """One of the two worlds, with the same firm: a collection, an account that names it, documents linked to it."""

    name: str
    services: Services
    log: list[Exchange]
    collection_id: str
    add_doc: Callable[[str, bytes], tuple[str, str]]  # (name, content) -> (document id, attachment id)
    set_page_cap: Callable[[int], None]
    upload_file: Path
    docs: list[tuple[str, str]] = field(default_factory=list)

    def doc(self, content: bytes = PDF) -> tuple[str, str]:
        made = self.add_doc(f"doc{len(self.docs) + 1}", content)
        self.docs.append(made)
        return made

    def upload(self, name: str = "crm-d1-abababab-x.pdf") -> str:
        return self.services.xai.upload(self.upload_file, name, "application/pdf").id


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(optimistic_concurrency=True) as box:  # versionNumber and X-Version-Number, as MockWorld
        yield box


@pytest.fixture
def mock_side(tmp_path: Path) -> Iterator[Side]:
    world = MockWorld()
    log: list[Exchange] = []
    settings = load_settings(None, env={
        "ESPOCRM_URL": CRM, "ESPOCRM_API_KEY": ESPO_KEY, "XAI_API_KEY": XAI_KEY, "XAI_MANAGEMENT_KEY": MGMT_KEY,
        "DOCSYNC_STATE_DIR": str(tmp_path / "mock"), "XAI_API_URL": FILES, "XAI_MANAGEMENT_URL": MGMT})
    collection = "collection_mock"

    def add_doc(name: str, content: bytes) -> tuple[str, str]:
        record = world.add_doc(name, content, collections=(collection,))
        return record["id"], record["fileId"]

    def set_page_cap(cap: int) -> None:
        world.page_cap = cap

    transports: dict[str, httpx.BaseTransport] = {name: Recorder(transport, log)
                                                  for name, transport in world.transports().items()}
    upload = tmp_path / "upload.pdf"
    upload.write_bytes(PDF)
    with open_services(settings, transports, retry=ONE_TRY) as services:
        world.collections.setdefault(collection, {"field_definitions": [], "docs": {}})
        yield Side("MockWorld", services, log, collection, add_doc, set_page_cap, upload)


@pytest.fixture
def emulator_side(sandbox: Sandbox, tmp_path: Path) -> Iterator[Side]:
    sandbox.espo.reset()
    sandbox.xai.reset()
    cap = sandbox.espo.max_size_limit
    log: list[Exchange] = []
    settings = load_settings(None, env=sandbox.environment(tmp_path / "emulator"))
    collection = sandbox.xai.create_collection("Mandant Müller GmbH")  # made by hand: no field definitions
    account = sandbox.espo.add_account("Müller GmbH", collection)

    def add_doc(name: str, content: bytes) -> tuple[str, str]:
        doc_id = sandbox.espo.add_document(name, content, f"{name}.pdf", accounts=[account])
        return doc_id, str(sandbox.espo.document(doc_id)["fileId"])

    def set_page_cap(limit: int) -> None:
        sandbox.espo.max_size_limit = limit

    transports: dict[str, httpx.BaseTransport] = {
        name: Recorder(httpx.HTTPTransport(), log) for name in ("espocrm", "xai_files", "xai_management")}
    upload = tmp_path / "upload.pdf"
    upload.write_bytes(PDF)
    try:
        with open_services(settings, transports, retry=ONE_TRY) as services:
            yield Side("emulator", services, log, collection, add_doc, set_page_cap, upload)
    finally:
        sandbox.espo.max_size_limit = cap


@pytest.fixture
def pair(mock_side: Side, emulator_side: Side) -> tuple[Side, Side]:
    return mock_side, emulator_side


# -- comparing ------------------------------------------------------------------------------------------


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def fits(mock: Any, emulator: Any, where: str = "$") -> list[str]:
    """Where ``mock`` sends what ``emulator`` would not: a key it lacks, another JSON type, a list of another
    length (empty when the mock's answer fits)."""
    if kind(mock) != kind(emulator):
        return [f"{where}: MockWorld sends {kind(mock)}, the emulator {kind(emulator)}"]
    if isinstance(mock, dict):
        problems = []
        for key, value in mock.items():
            if key not in emulator:
                problems.append(f"{where}.{key}: only MockWorld sends it")
            else:
                problems += fits(value, emulator[key], f"{where}.{key}")
        return problems
    if isinstance(mock, list):
        if len(mock) != len(emulator):
            return [f"{where}: MockWorld sends {len(mock)} items, the emulator {len(emulator)}"]
        return [problem for n, (m, e) in enumerate(zip(mock, emulator, strict=True))
                for problem in fits(m, e, f"{where}[{n}]")]
    return []


def require(body: Any, *paths: str) -> None:
    """Each dotted path is in ``body`` (``name[]``: the list at ``name``, then every element of it)."""
    for path in paths:
        values = [body]
        for step in path.split("."):
            key = step.removesuffix("[]")
            assert values and all(isinstance(v, dict) and key in v for v in values), f"{path!r} is missing"
            values = [value[key] for value in values]
            if step.endswith("[]"):
                assert all(isinstance(value, list) for value in values), f"{path!r} is not a list"
                values = [item for value in values for item in value]


def both(pair: tuple[Side, Side], action: Callable[[Side], object]) -> list[tuple[Exchange, Exchange]]:
    """Run ``action`` on each side; assert the same outcome and answers that fit; return the answer pairs."""
    outcomes: list[str | None] = []
    for side in pair:
        side.log.clear()
        try:
            action(side)
            outcomes.append(None)
        except DocsyncError as exc:
            outcomes.append(type(exc).__name__)
    assert outcomes[0] == outcomes[1], f"MockWorld: {outcomes[0]}, emulator: {outcomes[1]}"
    mock, emulator = (side.log for side in pair)
    assert [(m.method, m.status) for m in mock] == [(e.method, e.status) for e in emulator], (mock, emulator)
    for m, e in zip(mock, emulator, strict=True):
        assert bool(m.reason) == bool(e.reason), f"{m.method} {m.path}: reason {m.reason!r} vs {e.reason!r}"
        problems = fits(m.body, e.body)
        assert not problems, f"{m.method} {m.path}: {problems}"
    return list(zip(mock, emulator, strict=True))


def each(pairs: list[tuple[Exchange, Exchange]], *paths: str) -> None:
    for mock, emulator in pairs:
        require(mock.body, *paths)
        require(emulator.body, *paths)


def record_paths(side: Side, prefix: str = "") -> list[str]:
    return [prefix + attribute for attribute in side.services.espo.list_attributes]


# -- EspoCRM -------------------------------------------------------------------------------------------


def test_the_document_field_definitions_and_app_user(pair: tuple[Side, Side]) -> None:
    metadata, user = both(pair, lambda side: side.services.espo.learn())
    each([metadata], *[f"{name}.type" for name in DESIGN_DOC_FIELDS], "dateiStatus.options", "xaiSyncStatus.options")
    each([user], "user.id", "settings.recordListMaxSizeLimit")
    mock, emulator = (side.services.espo for side in pair)
    assert mock.schema.names == emulator.schema.names and mock.schema.options == emulator.schema.options
    assert mock.schema.preview_type == emulator.schema.preview_type and mock.schema.problems == ()
    assert mock.page_size == emulator.page_size == 200


def test_a_metadata_key_that_does_not_exist_is_an_empty_answer(pair: tuple[Side, Side]) -> None:
    found: list[Any] = []
    (answer,) = both(pair, lambda side: found.append(side.services.espo.metadata("entityDefs.Document.nope")))
    assert answer[0].body is None and answer[1].body is None and found == [None, None]


def test_the_listing_pages_by_the_page_cap_of_app_user(pair: tuple[Side, Side]) -> None:
    for side in pair:
        for _ in range(3):
            side.doc()
        side.set_page_cap(2)
    listed: list[int] = []

    def learn_then_list(side: Side) -> None:
        side.services.espo.learn()
        listed.append(len(list(side.services.espo.iter_documents())))

    pairs = both(pair, learn_then_list)
    assert listed == [3, 3] and [side.services.espo.page_size for side in pair] == [2, 2]
    pages = pairs[2:]
    assert len(pages) == 2  # two of two, one of one
    each(pages, "total", "list", *record_paths(pair[0], "list[]."))


def test_a_page_above_the_cap_is_refused_with_a_reason(pair: tuple[Side, Side]) -> None:
    for side in pair:
        side.doc()
        side.set_page_cap(2)

    def list_too_much(side: Side) -> None:
        side.services.espo.page_size = 3
        list(side.services.espo.iter_documents())

    (mock, emulator), = both(pair, list_too_much)
    assert mock.status == 403
    assert mock.reason == emulator.reason == "Max size should not exceed 2. Use offset and limit."


def test_getting_a_document_and_one_that_does_not_exist(pair: tuple[Side, Side]) -> None:
    for side in pair:
        side.doc()
    each(both(pair, lambda side: side.services.espo.get_document(side.docs[0][0])), "id", *record_paths(pair[0]))
    both(pair, lambda side: side.services.espo.get_document("0123456789abcdef0"))


def test_a_conditional_update_and_a_conflicting_one(pair: tuple[Side, Side]) -> None:
    for side in pair:
        side.doc()

    def write_back(side: Side) -> None:
        doc_id, attachment = side.docs[0]
        doc = side.services.espo.update(doc_id, {"md5": "a" * 32, "xaiSyncStatus": "syncing"}, version=1,
                                        file_id=attachment)
        assert doc.md5 == "a" * 32 and doc.version == 2

    each(both(pair, write_back), "id", *record_paths(pair[0]))
    (mock, emulator), = both(pair, lambda side: side.services.espo.update(side.docs[0][0], {"md5": "b" * 32},
                                                                          version=1))
    assert mock.status == 409
    each([(mock, emulator)], "versionNumber")


def test_an_enum_value_that_is_no_option_is_a_validation_failure(pair: tuple[Side, Side]) -> None:
    for side in pair:
        side.doc()

    def write_no_option(side: Side) -> None:
        espo = side.services.espo
        espo.learned.fields = dataclasses.replace(espo.schema, options={})  # as if the options were unknown
        espo.update(side.docs[0][0], {"xaiSyncStatus": "pending"})

    (mock, emulator), = both(pair, write_no_option)
    assert mock.status == 400 and mock.reason == emulator.reason and VALIDATION_REASON.search(mock.reason)


def test_updating_a_document_that_does_not_exist(pair: tuple[Side, Side]) -> None:
    both(pair, lambda side: side.services.espo.update("0123456789abcdef0", {"md5": "a" * 32}))


def test_the_accounts_of_a_document(pair: tuple[Side, Side]) -> None:
    for side in pair:
        side.doc()
    found: list[list[str]] = []
    pairs = both(pair, lambda side: found.append(side.services.espo.related_values(
        side.docs[0][0], "accounts", "xaiCollectionId")))
    each(pairs, "total", "list[].id", "list[].name", "list[].xaiCollectionId")
    assert found == [[pair[0].collection_id], [pair[1].collection_id]]


def test_downloading_an_attachment_and_one_that_does_not_exist(pair: tuple[Side, Side]) -> None:
    for side in pair:
        side.doc(b"%PDF-1.4 the same bytes")
    (mock, emulator), = both(pair, lambda side: side.services.espo.download(side.docs[0][1], io.BytesIO()))
    assert mock.body == emulator.body == b"%PDF-1.4 the same bytes"
    both(pair, lambda side: side.services.espo.download("0123456789abcdef0", io.BytesIO()))


# -- xAI -----------------------------------------------------------------------------------------------


def test_uploading_a_file_and_finding_it_by_name(pair: tuple[Side, Side]) -> None:
    each(both(pair, lambda side: side.upload()), "id", "filename", "bytes")
    found: list[int] = []
    pairs = both(pair, lambda side: found.append(len(side.services.xai.find_files("crm-d1-abababab"))))
    each(pairs, "data[].id", "data[].filename", "pagination_token")
    both(pair, lambda side: found.append(len(side.services.xai.find_files("crm-d2-cdcdcdcd"))))
    assert found == [1, 1, 0, 0]


def test_getting_and_deleting_a_file_and_one_that_does_not_exist(pair: tuple[Side, Side]) -> None:
    files = {side.name: side.upload() for side in pair}
    names: list[str | None] = []
    each(both(pair, lambda side: names.append(side.services.xai.file_name(files[side.name]))), "filename")
    both(pair, lambda side: names.append(side.services.xai.file_name("file_0000")))
    assert names == ["crm-d1-abababab-x.pdf"] * 2 + [None, None]
    both(pair, lambda side: side.services.xai.delete_file(files[side.name]))
    for mock, emulator in both(pair, lambda side: side.services.xai.delete_file(files[side.name])):  # 404: gone
        assert mock.status == 404
        each([(mock, emulator)], "code", "error")


def test_the_collections_field_definitions_are_read_and_declared(pair: tuple[Side, Side]) -> None:
    pairs = both(pair, lambda side: side.services.xai.ensure_fields(side.collection_id))
    assert [(m.method, m.status) for m, _ in pairs] == [("GET", 200), ("PUT", 200)]
    each(pairs, "field_definitions")
    keys: list[set[str]] = []
    each(both(pair, lambda side: keys.append(set(side.services.xai.get_collection(
        side.collection_id).field_keys))), "field_definitions[].key")
    assert keys[0] == keys[1] == {"crm_document_id", "content_sha256", "managed_by", "installation_id"}


def test_a_collection_that_does_not_exist(pair: tuple[Side, Side]) -> None:
    pairs = both(pair, lambda side: side.services.xai.get_collection("collection_0000"))
    assert [m.status for m, _ in pairs] == [404, 200]  # then the listing says the Management API is there
    each(pairs[:1], "code", "error")


def test_adding_listing_getting_and_removing_collection_documents(pair: tuple[Side, Side]) -> None:
    files = {side.name: side.upload() for side in pair}
    both(pair, lambda side: side.services.xai.ensure_fields(side.collection_id))
    both(pair, lambda side: side.services.xai.add_document(side.collection_id, files[side.name], "d1", SHA, "inst"))
    document = ("file_metadata.file_id", "file_metadata.name", "fields.crm_document_id", "fields.content_sha256",
                "fields.managed_by", "fields.installation_id", "status")
    statuses: list[dict[str, tuple[str, str]]] = []
    pairs = both(pair, lambda side: statuses.append(side.services.xai.statuses(
        side.collection_id, [files[side.name], "file_0000"])))
    each(pairs, *[f"documents[].{path}" for path in document])
    assert [list(found.values()) for found in statuses] == [[("DOCUMENT_STATUS_PROCESSED", "")]] * 2
    each(both(pair, lambda side: list(side.services.xai.iter_documents(side.collection_id))),
         *[f"documents[].{path}" for path in document])
    each(both(pair, lambda side: side.services.xai.member(side.collection_id, files[side.name])), *document)
    both(pair, lambda side: side.services.xai.reindex(side.collection_id, files[side.name]))
    both(pair, lambda side: side.services.xai.remove_document(side.collection_id, files[side.name]))
    for mock, emulator in both(pair, lambda side: side.services.xai.remove_document(side.collection_id,
                                                                                   files[side.name])):
        assert mock.status == 404  # not a member any more
        each([(mock, emulator)], "code", "error")
    gone: list[object] = []
    both(pair, lambda side: gone.append(side.services.xai.member(side.collection_id, files[side.name])))
    assert gone == [None, None]


def test_adding_a_file_that_does_not_exist_to_a_collection(pair: tuple[Side, Side]) -> None:
    both(pair, lambda side: side.services.xai.ensure_fields(side.collection_id))
    (mock, emulator), = both(pair, lambda side: side.services.xai.add_document(side.collection_id, "file_0000", "d1",
                                                                              SHA, "inst"))
    assert mock.status == 404
    each([(mock, emulator)], "code", "error")
