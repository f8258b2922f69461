"""How an architecture grows: compound, published-table and fast scaling."""
