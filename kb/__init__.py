"""The knowledge base (docs/knowledge.md): articles, versions, proposals, feedback, and the
suggestions for a call.

- ``kb.ranking``: the queries a call's inputs make and how their answers combine (pure).
- ``kb.render``: Markdown to safe HTML (no raw HTML, no script links).
- ``kb.store``: the articles and the rest in PostgreSQL (asyncpg), and the suggestions.
"""
