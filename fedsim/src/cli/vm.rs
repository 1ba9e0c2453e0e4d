//! `fedsim vm image|box`: the site image for provider "vm", and the same as a Vagrant box.

use fedsim::fleet::vm::image::{self, Image};

use super::{Exit, Global};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Build the site image (Debian bookworm, mmdebstrap) into fedsim's cache, unless this
    /// recipe's image is there already, and print where it is.
    Image {
        /// Build again even if the image is there.
        #[arg(long)]
        rebuild: bool,
    },
    /// Pack the image as a local Vagrant box (libvirt) and print the `vagrant box add` command.
    Box,
}

pub fn exec(what: Command, g: &Global) -> Exit {
    match what {
        Command::Image { rebuild } => {
            let built = if rebuild {
                Image::build()
            } else {
                Image::ensure()
            };
            match built {
                Ok(image) => {
                    say!("{}", image.dir.display());
                    Exit::Succeeded
                }
                Err(e) => super::failed(e),
            }
        }
        Command::Box => match Image::ensure().and_then(|i| image::pack_box(&i)) {
            Ok(file) => {
                if !g.quiet {
                    eprintln!(
                        "add it with: vagrant box add --name fedsim/bookworm {}",
                        file.display()
                    );
                }
                say!("{}", file.display());
                Exit::Succeeded
            }
            Err(e) => super::failed(e),
        },
    }
}
