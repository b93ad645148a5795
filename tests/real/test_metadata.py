"""The real EspoCRM's metadata as admins have it: the entityDefs `docsync espocrm-fields` prints, installed into the
instance's custom metadata and rebuilt; and the fields under the Entity Manager's ``c``-prefixed names (the
fixture's ``ESPOCRM_FIELD_PREFIX=c`` profile), with the HMAC API user.

Both change the fixture's metadata for the length of the test and put it back (``tests/real/instance.py``), so
they run only where the suite started the fixture itself; on a CRM that already has ``c``-prefixed fields the
second runs without changing anything."""

from __future__ import annotations

import json
from pathlib import Path

from docsync_sandbox.seed import corpus_dir
from docsync_sandbox.xai import XaiEmulator
from tests.real.instance import custom_metadata, local_instance, printed_files, rename_to_c_prefix
from tests.real.proxy import CountingProxy
from tests.real.realcrm import Admin, Docsync, RealCrm, members, xai_emulator

CORPUS = corpus_dir()
NOTE = b"Telefonnotiz: Frist am Montag, Akte Zebrafink.\n"


def test_the_printed_entity_defs_install_and_check_then_passes_without_hints(
        admin: Admin, real: RealCrm, proxy: CountingProxy, tmp_path: Path) -> None:
    local_instance(real)
    with xai_emulator(processing_delay=1.5) as xai:  # xAI indexes longer than docsync waits: "pending"
        docsync = Docsync(real, xai, tmp_path / "state", proxy,
                          extra={"DOCSYNC_SYNC__PROCESSING_WAIT_SECONDS": "0.2"} | admin.settings())
        printed = printed_files(docsync.ok("espocrm-fields"))
        assert "custom/Espo/Custom/Resources/metadata/entityDefs/Document.json" in printed

        def install(resources: Path) -> None:  # as the admin pastes them: each printed file, whole
            for name, content in printed.items():
                path = resources / Path(name).relative_to("custom/Espo/Custom/Resources")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(content, indent=4, ensure_ascii=False), encoding="utf-8")

        with custom_metadata(real, install):
            admin.learn_fields()
            fields = admin.call("GET", "Metadata?key=entityDefs.Document.fields")
            assert fields["xaiSyncStatus"]["options"] == printed[
                "custom/Espo/Custom/Resources/metadata/entityDefs/Document.json"]["fields"]["xaiSyncStatus"]["options"]
            out = docsync.ok("check")
            assert "All checks passed." in out and "hint" not in out, out
            assert "accountsIds override: active" in out, out

            collection = xai.create_collection("Mandant Felder")
            account = admin.account("Mandant Felder", collection)
            doc = admin.document("Vertrag", (CORPUS / "minimal-document.pdf").read_bytes(), "vertrag.pdf",
                                 mime="application/pdf", accounts=[account])
            docsync.ok("sync", "--no-preview")
            first = admin.read(doc)
            assert first["xaiSyncStatus"] == "pending" and first["dateiStatus"] != "Gesynct", first
            xai.processing_delay = 0.0
            xai.age_files(5)
            docsync.ok("sync", "--no-preview")
            assert admin.read(doc)["dateiStatus"] == "Gesynct" and doc in members(xai, collection)

            proxy.clear_journal()
            docsync.ok("sync", "--no-preview", "--full")  # the listing carries accountsIds: no list per account
            assert not [e.path for e in proxy.requests() if e.path.startswith("/api/v1/Account/")], \
                [e.raw_path for e in proxy.requests()]
            assert proxy.writes() == []


def test_c_prefixed_fields_with_the_hmac_user(admin: Admin, real: RealCrm, proxy: CountingProxy,
                                              xai: XaiEmulator, tmp_path: Path) -> None:
    docsync = Docsync(real, xai, tmp_path / "state", proxy, hmac=True)

    def scenario() -> None:
        admin.learn_fields()
        assert admin.attr("dateiStatus") == "cDateiStatus"
        collection = xai.create_collection("Mandant C")
        account = admin.account("Mandant C", collection)
        doc = admin.document("Notiz", NOTE, "notiz.txt", mime="text/plain", accounts=[account])
        # Account's field is cXaiCollectionId too: the default link rule must stop the run, not sync into nothing
        refused = docsync.run("sync", "--no-preview")
        assert refused.returncode == 2 and "cXaiCollectionId" in refused.stderr, refused.stdout + refused.stderr
        assert admin.read(doc)["cDateiStatus"] == "Neu" and xai.files() == {}
        assert "DOCSYNC_COLLECTIONS__LINKS=accounts:cXaiCollectionId" in docsync.ok("check", code=2)
        docsync.extra["DOCSYNC_COLLECTIONS__LINKS"] = "accounts:cXaiCollectionId"
        out = docsync.ok("check")
        assert "All checks passed." in out and "dateiStatus is cDateiStatus in this CRM" in out, out
        docsync.ok("sync")
        synced = admin.read(doc)
        assert synced["cDateiStatus"] == "Gesynct" and synced["cXaiFileId"] and synced["cPreviewId"]
        assert members(xai, collection) == {doc: synced["cXaiFileId"]}
        admin.replace_file(doc, NOTE + b"Nachtrag.\n", "notiz.txt", mime="text/plain")
        docsync.ok("sync", "--no-preview")
        again = admin.read(doc)
        assert again["cSha"] == again["cXaiSyncedHash"] != synced["cSha"]
        assert members(xai, collection) == {doc: again["cXaiFileId"]}

    if admin.attr("dateiStatus") == "cDateiStatus":  # the CRM has them already
        scenario()
        return
    with custom_metadata(real, rename_to_c_prefix):
        try:
            scenario()
        finally:
            admin.cleanup()  # while the c-prefixed names are still the ones that exist
