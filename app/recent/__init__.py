"""The read path behind `GET /messages`: a bounded buffer of recent records (`buffer`) filled by
a group-less background consumer (`reader`)."""
