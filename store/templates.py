"""Templates filed with a provider (ihuyi AddTemplate) and their audit results."""

from __future__ import annotations

import time

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from store.db import Store
from store.schema import ProviderTemplate, table_of

T = table_of(ProviderTemplate)


class TemplateStore(Store):
    def upsert(
        self,
        provider: str,
        template_id: str,
        *,
        state: str,
        content: str | None = None,
        message: str | None = None,
    ) -> None:
        now = time.time()
        with self.db.write() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            values = {
                "provider": provider,
                "template_id": template_id,
                "state": state,
                "message": message,
                "updated_at": now,
            }
            if content is not None:
                values["content"] = content
            stmt = dialect.insert(T).values(**values)
            stmt = stmt.on_conflict_do_update(
                index_elements=["provider", "template_id"],
                set_={k: stmt.excluded[k] for k in values if k not in ("provider", "template_id")},
            )
            conn.execute(stmt)

    def delete(self, provider: str, template_id: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                update(T)
                .where(T.c.provider == provider, T.c.template_id == template_id)
                .values(state="deleted", updated_at=time.time())
            )

    def get(self, provider: str, template_id: str):  # type: ignore[no-untyped-def]
        with self.db.read() as conn:
            return conn.execute(
                select(T).where(T.c.provider == provider, T.c.template_id == template_id)
            ).first()
