"""Command line and process supervision for the Chamados services."""
