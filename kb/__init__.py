"""The knowledge base (docs/knowledge.md): articles, versions, proposals, feedback, and the
suggestions for a call.

- ``kb.ranking``: the queries a call's inputs make and how their answers combine (pure).
- ``kb.render``: Markdown to safe HTML (no raw HTML, no script links).
- ``kb.store``: the articles and the rest in PostgreSQL (asyncpg), and the suggestions.
- ``kb.products``, ``kb.learn``: the customers' products from the center's data, synonyms to
  propose from agents' "Helped" marks (pure); ``kb.learn_store`` reads and writes them.
"""
