module ractogateway/zipcheck

go 1.26.0
