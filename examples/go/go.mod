module example.com/ractogateway-audit

go 1.22
