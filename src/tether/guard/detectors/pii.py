"""PII: Microsoft Presidio's pattern recognisers, run offline, and masking of what they find.

Presidio's analyzer normally loads a spaCy English model for names and for context words; no spaCy 3 English
model installs from PyPI, so the default engine tokenises with a blank spaCy pipeline (tokens and lowercase
lemmas, enough for Presidio's context boost: "my SSN is ..." raises an SSN match) and names are not found.
Set ``spacy_model`` to an installed spaCy model (``en_core_web_lg``) to add PERSON, LOCATION and other named
entities through Presidio's spaCy recogniser.

E-mail validation uses ``tldextract`` with its bundled public-suffix snapshot only (Presidio's default asks
publicsuffix.org over the network on first use).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Any, ClassVar

from pydantic import Field, field_validator

from tether.config.options import Options
from tether.errors import ConfigError
from tether.guard.detection import Span, merge_spans
from tether.guard.detectors.base import ViewDetector, register

RECOGNIZERS = {
    "EMAIL_ADDRESS": "EmailRecognizer",
    "PHONE_NUMBER": "PhoneRecognizer",
    "CREDIT_CARD": "CreditCardRecognizer",
    "IBAN_CODE": "IbanRecognizer",
    "IP_ADDRESS": "IpRecognizer",
    "US_SSN": "UsSsnRecognizer",
    "US_PASSPORT": "UsPassportRecognizer",
    "UK_NHS": "NhsRecognizer",
    "UK_NINO": "UkNinoRecognizer",
    "CA_SIN": "CaSinRecognizer",
    "ES_NIF": "EsNifRecognizer",
    "ES_NIE": "EsNieRecognizer",
    "IT_FISCAL_CODE": "ItFiscalCodeRecognizer",
    "DE_TAX_ID": "DeTaxIdRecognizer",
    "PL_PESEL": "PlPeselRecognizer",
    "FI_PERSONAL_IDENTITY_CODE": "FiPersonalIdentityCodeRecognizer",
    "SE_PERSONNUMMER": "SePersonnummerRecognizer",
    "IN_AADHAAR": "InAadhaarRecognizer",
    "IN_PAN": "InPanRecognizer",
    "SG_NRIC_FIN": "SgFinRecognizer",
    "AU_TFN": "AuTfnRecognizer",
    "KR_RRN": "KrRrnRecognizer",
    "ZA_ID_NUMBER": "ZaIdNumberRecognizer",
}
"""Entity -> Presidio recogniser class: generic formats (each with its checksum where it has one: Luhn for
cards, mod-97 for IBAN) and national ID numbers of several countries, all registered for English text."""
DEFAULT_ENTITIES = [e for e in RECOGNIZERS if e != "SE_PERSONNUMMER"]
"""Every recogniser but the Swedish personal number, which matches date-and-counter strings
("20240315-1422") in ordinary text; name it in ``entities`` to use it."""
NAMED_ENTITIES = ("PERSON", "LOCATION", "NRP", "ORGANIZATION", "DATE_TIME")
"""Entities found only with ``spacy_model`` (Presidio's spaCy recogniser)."""


class PiiOptions(Options):
    entities: list[str] = Field(default_factory=lambda: list(DEFAULT_ENTITIES))
    """Presidio entity types to find (default: every pattern recogniser in RECOGNIZERS but SE_PERSONNUMMER)."""
    min_score: float = Field(0.4, ge=0, le=1)
    """Presidio's confidence a match must reach (after context words) to count."""
    spacy_model: str | None = None
    """An installed spaCy model for names and places (PERSON, LOCATION ...); none by default (offline)."""

    @field_validator("entities")
    @classmethod
    def _known(cls, entities: list[str]) -> list[str]:
        unknown = [e for e in entities if e not in RECOGNIZERS and e not in NAMED_ENTITIES]
        if unknown:
            raise ValueError(
                f"unknown entities {unknown}; known: {', '.join(RECOGNIZERS)} (and with spacy_model: "
                f"{', '.join(NAMED_ENTITIES)})"
            )
        return entities


@lru_cache(maxsize=1)
def _offline_tld() -> Any:
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def _blank_engine() -> Any:
    """A Presidio NLP engine on a blank spaCy English tokenizer: tokens and lowercase lemmas, no entities."""
    import spacy
    from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine

    class BlankSpacyEngine(NlpEngine):
        def __init__(self) -> None:
            self.nlp = spacy.blank("en")

        def load(self) -> None:
            pass

        def is_loaded(self) -> bool:
            return True

        def process_text(self, text: str, language: str) -> NlpArtifacts:
            doc = self.nlp(text)
            return NlpArtifacts(
                entities=[],
                tokens=doc,
                tokens_indices=[t.idx for t in doc],
                lemmas=[t.lower_ for t in doc],
                nlp_engine=self,
                language=language,
            )

        def process_batch(self, texts, language, batch_size=1, n_process=1, **kwargs):  # type: ignore[no-untyped-def]
            for text in texts:
                yield text, self.process_text(text, language)

        def is_stopword(self, word: str, language: str) -> bool:
            return self.nlp.vocab[word].is_stop

        def is_punct(self, word: str, language: str) -> bool:
            return self.nlp.vocab[word].is_punct

        def get_supported_entities(self) -> list[str]:
            return []

        def get_supported_languages(self) -> list[str]:
            return ["en"]

    return BlankSpacyEngine()


@lru_cache(maxsize=8)
def shared_analyzer(entities: tuple[str, ...], spacy_model: str | None) -> Any:
    """One analyzer per set of entities in a process (rails and the store's redactor share it)."""
    return build_analyzer(list(entities), spacy_model)


class RecentFindings:
    """The spans found in the last ``size`` texts per analyzer, so the store's redactor does not run Presidio
    again on a request or answer a PII rail has just analysed."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._found: OrderedDict[tuple[Any, str], list[Span]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, str]) -> list[Span] | None:
        with self._lock:
            found = self._found.get(key)
            if found is not None:
                self._found.move_to_end(key)
            return found

    def clear(self) -> None:
        with self._lock:
            self._found.clear()

    def put(self, key: tuple[Any, str], spans: list[Span]) -> None:
        with self._lock:
            self._found[key] = spans
            while len(self._found) > self.size:
                self._found.popitem(last=False)


RECENT = RecentFindings()


def build_analyzer(entities: list[str], spacy_model: str | None) -> Any:
    """A Presidio AnalyzerEngine with exactly the recognisers ``entities`` need, and no network access."""
    import presidio_analyzer.predefined_recognizers as predefined
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry

    class OfflineEmailRecognizer(predefined.EmailRecognizer):  # type: ignore[misc,name-defined]
        def validate_result(self, pattern_text: str) -> bool:
            return bool(_offline_tld()(pattern_text).fqdn)

    registry = RecognizerRegistry(supported_languages=["en"])
    for name in sorted({RECOGNIZERS[e] for e in entities if e in RECOGNIZERS}):
        cls = OfflineEmailRecognizer if name == "EmailRecognizer" else getattr(predefined, name)
        registry.add_recognizer(cls(supported_language="en"))
    if spacy_model:
        from presidio_analyzer.nlp_engine import NlpEngineProvider

        try:
            engine = NlpEngineProvider(
                nlp_configuration={
                    "nlp_engine_name": "spacy",
                    "models": [{"lang_code": "en", "model_name": spacy_model}],
                }
            ).create_engine()
        except (OSError, ValueError) as err:
            raise ConfigError(f"pii: spaCy model {spacy_model!r} is not installed or cannot load ({err})") from err
        registry.add_recognizer(predefined.SpacyRecognizer(supported_language="en"))
    else:
        engine = _blank_engine()
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


@register
class Pii(ViewDetector):
    name: ClassVar[str] = "pii"
    summary: ClassVar[str] = (
        "e-mail, phone, credit card (Luhn), IBAN, IP, national IDs (Presidio, offline); names with spacy_model"
    )
    finds_spans: ClassVar[bool] = True
    scans_decoded: ClassVar[bool] = False
    Options = PiiOptions

    def __init__(self, options: PiiOptions | None = None, *, threshold: float | None = None) -> None:
        super().__init__(options, threshold=threshold)
        self._analyzer: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            if self._analyzer is None:
                opts: PiiOptions = self.options  # type: ignore[assignment]
                self._analyzer = shared_analyzer(tuple(opts.entities), opts.spacy_model)

    def find(self, text: str) -> list[Span]:
        """Every entity Presidio finds at or above ``min_score``, overlaps resolved by its own rules."""
        self.warm_up()
        opts: PiiOptions = self.options  # type: ignore[assignment]
        key = ((tuple(opts.entities), opts.spacy_model, opts.min_score), text)
        spans = RECENT.get(key)
        if spans is None:
            found = self._analyzer.analyze(
                text=text, language="en", entities=opts.entities, score_threshold=opts.min_score
            )
            spans = merge_spans([Span(r.start, r.end, r.entity_type) for r in found])
            RECENT.put(key, spans)
        return list(spans)

    def score_text(self, text: str) -> tuple[float, str, tuple[Span, ...]]:
        spans = self.find(text)
        if not spans:
            return 0.0, "nothing found", ()
        kinds = sorted({s.kind for s in spans})
        return 1.0, f"{len(spans)} PII match(es): {', '.join(kinds)}", tuple(spans)
