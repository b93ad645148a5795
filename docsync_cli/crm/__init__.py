"""The EspoCRM side: the REST client (:mod:`.client`) over its authenticated HTTP client (:mod:`.auth`), the
Document entity as one CRM defines it, learned once per run (:mod:`.schema`), what EspoCRM's refusals mean
(:mod:`.reasons`), its answers as frozen values (:mod:`.answers`) and the custom fields docsync needs
(:mod:`.fields`). The wire shapes stay in here: the rest of docsync sees ``model.CrmDocument``, these values and
docsync's errors."""
