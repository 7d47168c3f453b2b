"""The read path behind `GET /messages`: a bounded buffer of recent records (`buffer`), each kept
as read and shown when served (`record`), narrowed by `filters`, filled by a group-less
background consumer (`reader`)."""
