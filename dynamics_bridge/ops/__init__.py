"""Operations records: run history, the poison book and the audit trail, kept in durable storage.

``model`` is pure (records, filters, roll-ups); ``port`` says what a store must do; ``memory``
keeps them in one process (tests, the demo); ``tables`` keeps them in Azure Table Storage (Azurite
locally). Only the wiring picks a store.
"""
