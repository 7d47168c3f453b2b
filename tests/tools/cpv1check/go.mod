module ractogateway/cpv1check

go 1.26.0
