"""Both emulators together, plus a realistic sample firm to seed them with.

Used by ``docsync sandbox serve``, ``docsync demo``, the end-to-end tests and the benchmarks.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from docsync_sandbox.crm_profiles import CrmProfile, profile
from docsync_sandbox.espocrm import EspoEmulator
from docsync_sandbox.xai import XaiEmulator


def corpus_dir() -> Path:
    """The sample documents shipped with docsync (see ``corpus/SOURCES.md``)."""
    return Path(__file__).with_name("corpus")


@dataclass
class SeededFirm:
    accounts: dict[str, str] = field(default_factory=dict)  # account name -> account id
    collections: dict[str, str] = field(default_factory=dict)  # account name -> collection id
    documents: dict[str, str] = field(default_factory=dict)  # document name -> document id


# (document name, corpus file or special, accounts it is linked to, dateiStatus)
FIRM_DOCUMENTS: list[tuple[str, str, tuple[str, ...], str]] = [
    ("Mandatsvertrag Müller", "minimal-document.pdf", ("Müller GmbH",), "Neu"),
    ("Gutachten Bauschaden", "pdflatex-4-pages.pdf", ("Müller GmbH",), "Neu"),
    ("Schriftsatz Berufung", "libreoffice-writer.pdf", ("Müller GmbH", "Schmidt & Partner"), "Neu"),
    ("Protokoll Gesellschafterversammlung", "google-doc-document.pdf", ("Schmidt & Partner",), "Neu"),
    ("Vertragsentwurf (geschützt)", "encrypted-password.pdf", ("Schmidt & Partner",), "Neu"),
    ("Arabische Urkunde", "arabic-deed.pdf", ("Yilmaz Handel",), "Neu"),  # a page of RTL text, not one word
    ("Faxeingang Gericht", "imagemagick-ccittfax.pdf", ("Yilmaz Handel",), "Geändert"),
    ("Bilanz mit Grafik", "cmyk-image.pdf", ("Müller GmbH",), "Neu"),
    ("Skizze Unfallort", "pdflatex-image.pdf", ("Yilmaz Handel",), "Neu"),
    ("Klageschrift Entwurf", "python-docx-test.docx", ("Schmidt & Partner",), "Neu"),
    ("Beweisfotos Anlage", "having-images.docx", ("Müller GmbH",), "Geändert"),
    ("Notiz Telefonat", "libreoffice-source.odt", ("Yilmaz Handel",), "Neu"),
    ("Foto Wasserschaden", "exif-Landscape_6.jpg", ("Müller GmbH",), "Neu"),
    ("Foto Zeuge", "exif-Portrait_5.jpg", ("Yilmaz Handel",), "Neu"),
    ("Logo Mandant", "python.bmp", ("Schmidt & Partner",), "Gesynct"),
    ("Scan Grundbuchauszug", "smile.tiff", ("Yilmaz Handel",), "Gesynct"),
    ("Aktennotiz Fristen", "@text", ("Müller GmbH", "Yilmaz Handel"), "Neu"),
    ("Honorarübersicht", "@csv", ("Schmidt & Partner",), "Neu"),
    ("Beschädigte Datei", "@broken-pdf", ("Müller GmbH",), "Neu"),
    ("Scan unlesbar", "@garbage-pdf", ("Schmidt & Partner",), "Neu"),
    ("Leerer Datensatz ohne Datei", "@none", ("Yilmaz Handel",), "Neu"),
]

TEXT_NOTE = """Aktennotiz – Fristen

1. Berufungsbegründung bis 15.12.
2. Stellungnahme zum Gutachten bis 08.01.
3. Mandant über Kostenrisiko informieren.
""".encode()
CSV_NOTE = b"Monat;Stunden;Betrag\nSeptember;12,5;3125,00\nOktober;8,0;2000,00\n"
BROKEN_PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pa"  # truncated


class Sandbox:
    """Both emulators on loopback with generated keys, started and stopped together.

    ``crm`` is the EspoCRM field profile (:mod:`.crm_profiles`; default: the design document's fields)."""

    def __init__(self, *, processing_delay: float = 0.0, ports: tuple[int, int, int] = (0, 0, 0),
                 optimistic_concurrency: bool = False, crm: str | CrmProfile = "design") -> None:
        self.espo_key = "espo-" + secrets.token_hex(12)
        self.xai_key = "xai-" + secrets.token_hex(12)
        self.mgmt_key = "xai-mgmt-" + secrets.token_hex(12)
        self.profile = profile(crm) if isinstance(crm, str) else crm
        self.espo_secret = "espo-hmac-" + secrets.token_hex(12) if self.profile.hmac else None
        self.espo = EspoEmulator(api_key=self.espo_key, optimistic_concurrency=optimistic_concurrency,
                                 secret_key=self.espo_secret, field_names=self.profile.field_names,
                                 document_fields=self.profile.fields, max_size_limit=self.profile.max_size_limit)
        self.xai = XaiEmulator(api_key=self.xai_key, management_key=self.mgmt_key,
                               processing_delay=processing_delay)
        self._ports = ports
        self._more_crms: list[EspoEmulator] = []

    def start(self) -> Sandbox:
        self.espo.start(ports={"espocrm": self._ports[0]})
        self.xai.start(ports={"api": self._ports[1], "management": self._ports[2]})
        return self

    def stop(self) -> None:
        for crm in self._more_crms:
            crm.stop()
        self.espo.stop()
        self.xai.stop()

    def second_crm(self) -> EspoEmulator:
        """Another EspoCRM (its own key) whose docsync shares this xAI team: a staging installation, another
        office. Started; stopped with the sandbox. Point docsync at it with ``environment(state_dir, crm)``."""
        crm = EspoEmulator(api_key="espo-" + secrets.token_hex(12), field_names=self.profile.field_names,
                           document_fields=self.profile.fields, max_size_limit=self.profile.max_size_limit)
        crm.start(ports={"espocrm": 0})
        self._more_crms.append(crm)
        return crm

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def environment(self, state_dir: Path, crm: EspoEmulator | None = None) -> dict[str, str]:
        """The settings a user (or a test) exports to point docsync at the emulators (``crm``: another CRM
        from :meth:`second_crm` instead of the main one)."""
        secret = {"ESPOCRM_SECRET_KEY": self.espo_secret} if self.espo_secret and crm is None else {}
        return secret | {
            "ESPOCRM_URL": (crm or self.espo).url,
            "ESPOCRM_API_KEY": crm.api_key if crm is not None else self.espo_key,
            "XAI_API_URL": self.xai.api_url,
            "XAI_MANAGEMENT_URL": self.xai.management_url,
            "XAI_API_KEY": self.xai_key,
            "XAI_MANAGEMENT_KEY": self.mgmt_key,
            "DOCSYNC_STATE_DIR": str(state_dir),
            "DOCSYNC_SYNC__POLL_INTERVAL_SECONDS": "0.2",
        } | self._link_rule()

    def _link_rule(self) -> dict[str, str]:
        """A CRM whose Account field has another name (the ``c-prefixed`` profile) needs docsync's link rule
        to say so, as a firm's admin configures it."""
        field = self.profile.field_names.get("xaiCollectionId")
        return {"DOCSYNC_COLLECTIONS__LINKS": f"accounts:{field}"} if field else {}

    def writes(self) -> int:
        return len(self.espo.writes()) + len(self.xai.writes())

    def seed_firm(self, corpus: Path) -> SeededFirm:
        """Three client accounts, each with its own collection (made "by hand": no field definitions),
        and 21 documents of every kind, including a truncated PDF, one xAI cannot parse, an encrypted PDF and
        one with no file."""
        firm = SeededFirm()
        for account in ("Müller GmbH", "Schmidt & Partner", "Yilmaz Handel"):
            collection_id = self.xai.create_collection(f"Mandant {account}")
            firm.collections[account] = collection_id
            firm.accounts[account] = self.espo.add_account(account, collection_id)
        for name, source, accounts, status in FIRM_DOCUMENTS:
            content, file_name = _content(corpus, source)
            firm.documents[name] = self.espo.add_document(
                name, content, file_name, datei_status=status,
                accounts=[firm.accounts[a] for a in accounts])
        return firm


def _content(corpus: Path, source: str) -> tuple[bytes | None, str | None]:
    if source == "@text":
        return TEXT_NOTE, "aktennotiz-fristen.txt"
    if source == "@csv":
        return CSV_NOTE, "honorar.csv"
    if source == "@broken-pdf":
        return BROKEN_PDF, "beschaedigt.pdf"
    if source == "@garbage-pdf":
        return b"\x00\x17 scanner wrote noise here \xff" * 40, "scan-unlesbar.pdf"
    if source == "@none":
        return None, None
    path = corpus / source
    return path.read_bytes(), path.name
