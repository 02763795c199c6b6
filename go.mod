module github.com/appliveryfs/appliveryfs

go 1.26.8

require (
	github.com/hanwen/go-fuse/v2 v2.12.1
	github.com/hashicorp/golang-lru/v2 v2.0.7
	github.com/spf13/pflag v1.1.0
	golang.org/x/sync v0.25.0
)

require golang.org/x/sys v0.28.0
