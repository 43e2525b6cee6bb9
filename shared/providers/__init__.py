"""The ID providers, behind one seam as the stores are: one package or module per provider (its
webhooks' inbound sources, its adapter that opens a session and its link, its code tables), and
the one table of them (`registry.PROVIDERS`)."""
