# Appliance image targets, included by the top-level Makefile:
#   make iso       build build/appliance/tapbeat.iso (kernel from Debian's
#                  linux-image-amd64, downloaded once into build/appliance/deb)
#   make iso-test  boot it under qemu (BIOS, then UEFI from a USB stick image)
#                  and check it end to end; see ISO.md.
GO        ?= go
VERSION   ?= dev
ISO_DIR   ?= build/appliance
ISO       := $(ISO_DIR)/tapbeat.iso

.PHONY: iso iso-test

iso: bin/tapbeat
	GO="$(GO)" VERSION="$(VERSION)" appliance/build.sh $(ISO_DIR) bin/tapbeat

iso-test: iso
	TAPBEAT_ISO="$(abspath $(ISO))" $(GO) test -count=1 -timeout 15m -v ./appliance/isotest/
