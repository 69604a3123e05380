# Appliance image targets, included by the top-level Makefile:
#   make iso       build build/appliance/tapbeat.iso (kernel from Debian's
#                  linux-image-amd64, downloaded once into build/appliance/deb)
#   make iso-test  boot it under qemu (BIOS from CD, then UEFI from a USB
#                  stick image) and check it end to end; see ISO.md.
GO       ?= go
VERSION  ?= dev
COMMIT   ?= unknown
ISO_DIR  ?= build/appliance
ISO      := $(ISO_DIR)/tapbeat.iso
# tapbeat for the image is built here, static, so a concurrent build of
# bin/tapbeat cannot slip a different binary into the image.
ISO_TAPBEAT := $(ISO_DIR)/tapbeat

.PHONY: iso iso-test

iso:
	@mkdir -p $(ISO_DIR)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)' -o $(ISO_TAPBEAT) ./cmd/tapbeat
	GO="$(GO)" VERSION="$(VERSION)" appliance/build.sh $(ISO_DIR) $(ISO_TAPBEAT)

iso-test: iso
	TAPBEAT_ISO="$(abspath $(ISO))" TAPBEAT_BIN="$(abspath $(ISO_TAPBEAT))" \
		$(GO) test -count=1 -timeout 15m -v ./appliance/isotest/
