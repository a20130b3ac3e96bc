// Lays out Kairos live installer ISOs: the boot files, GRUB configuration and ESP image a live
// ISO needs, as an IsoDescription for the writer.
#include "formats/iso_writer.h"

#include <fmt/format.h>

#include "boot/esp.h"

namespace edgeforge::formats {

namespace {

void check_inputs(const LiveIsoInputs& inputs) {
    if (inputs.rootfs == nullptr || inputs.spill == nullptr) {
        throw std::invalid_argument("prepare_live_iso needs the rootfs tree and its spill file");
    }
}

std::filesystem::path templates_of(const LiveIsoInputs& inputs) {
    return inputs.templates.empty() ? templates_directory() : inputs.templates;
}

} // namespace

LiveBootAssets prepare_live_boot(const LiveIsoInputs& inputs) {
    check_inputs(inputs);
    if (inputs.work_directory.empty()) {
        throw std::invalid_argument("prepare_live_iso needs a work directory");
    }
    LiveBootAssets assets;
    boot::BootAssetOptions options;
    options.work_directory = inputs.work_directory;
    assets.efi = boot::prepare_efi_boot_files(*inputs.rootfs, *inputs.spill, inputs.arch, options);
    assets.bios =
        boot::prepare_bios_boot_files(*inputs.rootfs, *inputs.spill, inputs.arch, options);
    assets.esp_image = inputs.work_directory / "uefi.img";
    boot::EspOptions esp;
    esp.source_date_epoch = inputs.source_date_epoch;
    boot::build_esp_image(
        boot::live_esp_files(assets.efi, boot::render_grub_stub(templates_of(inputs))),
        assets.esp_image, esp);
    return assets;
}

LiveIsoPlan describe_live_iso(const LiveIsoInputs& inputs, LiveBootAssets assets) {
    check_inputs(inputs);
    const fs::SpillFile& spill = *inputs.spill;
    LiveIsoPlan plan;
    plan.kernel = boot::find_kernel_and_initrd(*inputs.rootfs);
    plan.efi = std::move(assets.efi);
    plan.bios = std::move(assets.bios);
    plan.esp_image = std::move(assets.esp_image);

    boot::LiveMenuOptions menu = inputs.menu;
    menu.arch = inputs.arch;
    const std::filesystem::path templates = templates_of(inputs);
    const std::string menu_cfg = boot::render_live_menu(menu, templates);
    const std::string stub = boot::render_grub_stub(templates);

    IsoDescription& iso = plan.description;
    iso.volume_id = menu.volume_id;
    iso.arch = inputs.arch;
    iso.source_date_epoch = inputs.source_date_epoch;
    iso.files.push_back(
        {std::string(boot::k_live_kernel_path), IsoTreeFile{plan.kernel.kernel, &spill}, 0644});
    iso.files.push_back(
        {std::string(boot::k_live_initrd_path), IsoTreeFile{plan.kernel.initrd, &spill}, 0644});
    iso.files.push_back({"/" + menu.squashfs_name, IsoHostFile{inputs.squashfs}, 0644});
    if (inputs.user_data) {
        iso.files.push_back({"/config.yaml", IsoBytes{*inputs.user_data}, 0644});
    }
    iso.files.push_back({"/.disk/info", IsoBytes{inputs.disk_info + "\n"}, 0644});
    iso.files.push_back(
        {fmt::format("{}/grub.cfg", boot::k_live_menu_dir), IsoBytes{menu_cfg}, 0644});
    iso.files.push_back({"/boot/grub/grub.cfg", IsoBytes{stub}, 0644});
    // A grub started from the El Torito EFI image has the CD (the ISO 9660 tree, not the ESP) as
    // its root, so the ESP's /EFI/BOOT prefix must resolve on the ISO too.
    iso.files.push_back({"/EFI/BOOT/grub.cfg", IsoBytes{stub}, 0644});
    iso.files.push_back({"/boot/uefi.img", IsoHostFile{plan.esp_image}, 0644});
    iso.files.insert(iso.files.end(), inputs.extra_files.begin(), inputs.extra_files.end());
    for (const auto& overlay : inputs.overlay_directories) {
        iso.directories.push_back({"/", overlay});
    }
    if (plan.bios) {
        iso.bios_boot =
            IsoBiosBoot{plan.bios->eltorito_image, plan.bios->hybrid_mbr, "/boot/eltorito.img"};
    }
    iso.efi_system_partition = plan.esp_image;
    return plan;
}

LiveIsoPlan prepare_live_iso(const LiveIsoInputs& inputs) {
    // The kernel and initrd are looked up first: a rootfs without them fails before any work.
    check_inputs(inputs);
    (void)boot::find_kernel_and_initrd(*inputs.rootfs);
    return describe_live_iso(inputs, prepare_live_boot(inputs));
}

} // namespace edgeforge::formats
